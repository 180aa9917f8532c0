"""The post-processing tuner: on planted components it learns to drop false positives and keep tumours."""

from __future__ import annotations

import numpy as np
import pytest

from bratsx.postprocess import NO_POSTPROCESS, apply_postprocess
from bratsx.postprocess_tuning import TuneMetric, leave_one_out, score_table, tune_spec, tuning_case

SPACING = (1.0, 1.0, 1.0)


def _case(case_id: str, offset: int, blob: int, et_blob: bool = False):
    """A case whose prediction is its reference plus a planted false-positive WT blob of ``blob``^3 voxels;
    with ``et_blob``, the prediction also has a small ET speck where the reference has no ET at all."""
    reference = np.zeros((3, 48, 48, 48), bool)
    reference[0, offset:offset + 16, 4:20, 4:20] = True
    reference[1, offset + 4:offset + 12, 8:16, 8:16] = True
    prediction = reference.copy()
    prediction[0, 36:36 + blob, 36:36 + blob, 36:36 + blob] = True
    if et_blob:
        reference[2] = False
        prediction[2, offset + 6:offset + 9, 10:13, 10:13] = True  # 27 voxels of ET inside TC
    else:
        reference[2, offset + 6:offset + 10, 10:14, 10:14] = True
        prediction[2] = reference[2]
    return tuning_case(case_id, prediction, reference, SPACING)


@pytest.mark.parametrize("metric", list(TuneMetric))
def test_tuned_threshold_removes_a_planted_small_component_and_keeps_the_large_one(metric):
    cases = [_case("a", 2, 3), _case("b", 6, 2)]
    spec = tune_spec(cases, metric)
    unseen = _case("c", 4, 3)
    out = apply_postprocess(unseen.prediction.copy(), SPACING, spec)
    assert (out == unseen.reference).all()  # the blob went, the tumour stayed whole
    tuned, untouched = score_table(cases, spec), score_table(cases, NO_POSTPROCESS)
    assert tuned["lesion-wise"]["WT"] == 1.0 > untouched["lesion-wise"]["WT"]


def test_tuner_learns_et_to_ncr_for_a_speck_of_et_where_there_is_none():
    cases = [_case("a", 2, 0, et_blob=True), _case("b", 6, 0, et_blob=True)]
    spec = tune_spec(cases, TuneMetric.LESION_WISE)
    assert spec.et_to_ncr_below_mm3 > 27 or spec.min_volume_mm3["ET"] > 27
    assert score_table(cases, spec)["lesion-wise"]["ET"] == 1.0


def test_nothing_to_gain_gives_no_postprocessing():
    cases = [_case("a", 2, 0), _case("b", 6, 0)]
    assert tune_spec(cases) == NO_POSTPROCESS


def test_leave_one_out_scores_each_case_with_a_spec_tuned_without_it():
    cases = [_case("a", 2, 3), _case("b", 6, 2), _case("c", 4, 3)]
    result = leave_one_out(cases)
    assert set(result.specs) == {"a", "b", "c"}
    assert result.after["lesion-wise"]["WT"] == 1.0 > result.before["lesion-wise"]["WT"]
