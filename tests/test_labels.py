import itertools

import numpy as np
import pytest

from bratsx.labels import (
    LabelConvention,
    LabelSetError,
    OutputMode,
    Tissue,
    convert_labels,
    detect_convention,
    labels_from_regions,
    regions_from_labels,
    unexpected_values,
)

# The expected (WT, TC, ET) membership of each tissue, written out by hand from the BraTS definitions.
EXPECTED_REGIONS = {
    Tissue.NECROTIC_CORE: (True, True, False),
    Tissue.EDEMA: (True, False, False),
    Tissue.ENHANCING: (True, True, True),
}
# Label value of each tissue per convention, written out by hand from the challenge documents.
EXPECTED_VALUES = {
    LabelConvention.BRATS2020: {Tissue.NECROTIC_CORE: 1, Tissue.EDEMA: 2, Tissue.ENHANCING: 4},
    LabelConvention.BRATS2023: {Tissue.NECROTIC_CORE: 1, Tissue.EDEMA: 2, Tissue.ENHANCING: 3},
    LabelConvention.BRATS2024: {Tissue.NECROTIC_CORE: 1, Tissue.EDEMA: 2, Tissue.ENHANCING: 3},
    LabelConvention.MEN: {Tissue.NECROTIC_CORE: 1, Tissue.EDEMA: 2, Tissue.ENHANCING: 3},
    LabelConvention.MET: {Tissue.NECROTIC_CORE: 1, Tissue.EDEMA: 2, Tissue.ENHANCING: 3},
    LabelConvention.PED2023: {Tissue.NECROTIC_CORE: 1, Tissue.EDEMA: 2, Tissue.ENHANCING: 3},
    # pediatric 2024: ET 1, NET 2 (the core a network predicts), CC 3, ED 4
    LabelConvention.PED2024: {Tissue.NECROTIC_CORE: 2, Tissue.EDEMA: 4, Tissue.ENHANCING: 1},
    LabelConvention.MSD: {Tissue.NECROTIC_CORE: 2, Tissue.EDEMA: 1, Tissue.ENHANCING: 3},
}


def all_values_map(convention: LabelConvention) -> np.ndarray:
    values = [0, *EXPECTED_VALUES[convention].values()]
    return np.array(values * 3, dtype=np.uint8).reshape(3, 4, 1)


@pytest.mark.parametrize("convention", list(LabelConvention))
@pytest.mark.parametrize("tissue", list(Tissue))
def test_each_tissue_maps_to_its_regions(convention, tissue):
    labels = np.array([[[0, EXPECTED_VALUES[convention][tissue]]]], dtype=np.uint8)
    regions = regions_from_labels(labels, convention)
    assert regions.shape == (3, 1, 1, 2)
    assert tuple(regions[:, 0, 0, 1]) == EXPECTED_REGIONS[tissue]
    assert not regions[:, 0, 0, 0].any()  # background is in no region


@pytest.mark.parametrize("convention", list(LabelConvention))
def test_labels_round_trip_through_regions(convention):
    labels = all_values_map(convention)
    assert np.array_equal(labels_from_regions(regions_from_labels(labels, convention), convention), labels)


@pytest.mark.parametrize("source,target", list(itertools.permutations(LabelConvention, 2)))
def test_conversion_preserves_regions_and_round_trips(source, target):
    labels = all_values_map(source)
    converted = convert_labels(labels, source, target)
    assert converted.dtype == np.uint8
    assert np.array_equal(regions_from_labels(converted, target), regions_from_labels(labels, source))
    assert np.array_equal(convert_labels(converted, target, source), labels)


def test_regions_accept_int16_labels_as_stored_in_brats_files():
    labels = np.array([0, 1, 2, 4], dtype=np.int16)
    assert regions_from_labels(labels, LabelConvention.BRATS2020)[2].tolist() == [False, False, False, True]


def test_inner_region_wins_when_predictions_are_not_nested():
    # ET predicted where TC is not, TC where WT is not: the inner region decides the label.
    regions = np.array([[[0, 1, 0, 1]], [[0, 0, 1, 0]], [[1, 0, 0, 0]]], dtype=bool).reshape(3, 4)
    labels = labels_from_regions(regions, LabelConvention.BRATS2020)
    assert labels.tolist() == [4, 2, 1, 2]


def test_labels_from_regions_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match="3 region channels"):
        labels_from_regions(np.zeros((2, 4), dtype=bool), LabelConvention.BRATS2020)


@pytest.mark.parametrize(
    "convention,values,bad",
    [
        (LabelConvention.BRATS2020, [0, 1, 2, 3], [3]),
        (LabelConvention.BRATS2023, [0, 1, 2, 4], [4]),
        (LabelConvention.MSD, [0, 1, 5], [5]),
        (LabelConvention.BRATS2020, [0, 1, 2, 4], []),
    ],
)
def test_unexpected_values_lists_what_the_convention_lacks(convention, values, bad):
    assert unexpected_values(np.array(values, dtype=np.int16), convention) == bad


def test_unexpected_values_catches_fractional_float_labels():
    assert unexpected_values(np.array([0.0, 1.0, 2.5], dtype=np.float32), LabelConvention.BRATS2020) == [2.5]


@pytest.mark.parametrize(
    "values,expected",
    [
        ([0, 1, 2, 3], LabelConvention.BRATS2023),  # 2023 and 2024 read 1-3 alike: the first
        ([0, 1, 2], LabelConvention.BRATS2023),  # no ET: every adult glioma set reads the same; 2023 first
        ([0, 3, 4], LabelConvention.BRATS2024),  # ET 3 and 4 together: only the set with RC holds both
    ],
)
def test_detect_convention_from_values(values, expected):
    assert detect_convention(np.array(values, dtype=np.uint8)) == expected


@pytest.mark.parametrize("values", [[0, 1, 2, 4], [0, 4]])
def test_detect_convention_refuses_values_two_candidates_read_differently(values):
    # 4 is ET in BraTS 2018-2021 and RC in 2024: never guessed
    with pytest.raises(LabelSetError, match=r"ambiguous .*--labels brats2020\|brats2024"):
        detect_convention(np.array(values, dtype=np.uint8))


def test_detect_convention_refuses_values_no_candidate_holds():
    with pytest.raises(LabelSetError, match=r"fit none .*--labels"):
        detect_convention(np.array([0, 7], dtype=np.uint8))


@pytest.mark.parametrize("mode,channels", [(OutputMode.REGIONS, 3), (OutputMode.LABELS, 4)])
def test_output_mode_channels(mode, channels):
    assert mode.channels == channels
