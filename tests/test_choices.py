import pytest

from bratsx.choices import look_up
from bratsx.errors import BratsxError
from bratsx.labels import LabelConvention
from bratsx.runtime.backends import BackendName
from bratsx.runtime.segment import SegmentOptions, Window


@pytest.mark.parametrize(("value", "expected"), [("ort", BackendName.ORT), ("OpenVINO", BackendName.OPENVINO),
                                                 (BackendName.TRT, BackendName.TRT)])
def test_a_name_or_member_is_found_whatever_its_case(value, expected):
    assert look_up(BackendName, value, "backend") is expected


def test_a_typo_gets_the_nearest_name_and_every_choice():
    with pytest.raises(BratsxError, match=r"unknown backend 'ortt' \(did you mean 'ort'\?\); choose one of auto, ort"):
        look_up(BackendName, "ortt", "backend")


def test_options_parse_their_choices_once_at_the_boundary():
    options = SegmentOptions(window="box", convention="brats2023")
    assert options.window is Window.BOX and options.convention is LabelConvention.BRATS2023
    with pytest.raises(BratsxError, match="unknown window 'boxx' \\(did you mean 'box'\\?\\)"):
        SegmentOptions(window="boxx")
