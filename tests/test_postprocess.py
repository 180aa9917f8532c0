"""The post-processing spec: plain data both ways, and each step doing what it says on planted components."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bratsx.errors import BratsxError
from bratsx.postprocess import NO_POSTPROCESS, PostprocessSpec, apply_postprocess, read_spec, spec_of

SPACING = (1.0, 1.0, 1.0)


def _regions(shape=(40, 40, 40)) -> np.ndarray:
    """Nested WT/TC/ET masks: a large tumour (WT 16^3 with a 10^3 TC and 6^3 ET inside) and a small WT blob."""
    regions = np.zeros((3, *shape), bool)
    regions[0, 2:18, 2:18, 2:18] = True
    regions[1, 5:15, 5:15, 5:15] = True
    regions[2, 7:13, 7:13, 7:13] = True
    regions[0, 30:33, 30:33, 30:33] = True  # 27 voxels
    return regions


def test_spec_round_trips_through_a_dict_and_json():
    spec = PostprocessSpec(min_volume_mm3={"WT": 100, "ET": 20.5}, min_largest_ratio={"TC": 0.1},
                           et_to_ncr_below_mm3=300)
    assert PostprocessSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.min_volume_mm3 == {"WT": 100.0, "TC": 0.0, "ET": 20.5}
    assert spec_of(None) == NO_POSTPROCESS and spec_of(spec.to_dict()) == spec


@pytest.mark.parametrize("values, problem", [
    ({"min_volume_mm3": {"XT": 3}}, "unknown region"),
    ({"min_volume_mm3": {"WT": -1}}, "must be a number >= 0"),
    ({"min_largest_ratio": {"WT": 2}}, "at most 1"),
    ({"et_to_ncr_below": 3}, "unknown key"),
    ({"format": "other"}, "format"),
    ([1, 2], "JSON object"),
])
def test_a_bad_spec_is_refused_in_one_line(values, problem):
    with pytest.raises(BratsxError, match=problem):
        PostprocessSpec.from_dict(values)


def test_a_spec_file_error_names_the_file(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text("{not json")
    with pytest.raises(BratsxError, match="spec.json"):
        read_spec(path)


def test_minimum_volume_removes_the_small_component_and_keeps_the_large_one():
    regions = _regions()
    out = apply_postprocess(regions.copy(), SPACING, PostprocessSpec(min_volume_mm3={"WT": 28}))
    assert not out[0, 30:33, 30:33, 30:33].any()
    assert (out[:, :20, :20, :20] == regions[:, :20, :20, :20]).all()


def test_volume_is_in_mm3_so_spacing_counts():
    regions = _regions()
    spec = PostprocessSpec(min_volume_mm3={"WT": 28})
    kept = apply_postprocess(regions.copy(), (2.0, 1.0, 1.0), spec)  # the blob is 54 mm^3 now
    assert kept[0, 30:33, 30:33, 30:33].all()


def test_components_are_26_connected():
    regions = np.zeros((3, 10, 10, 10), bool)
    regions[0, 2, 2, 2] = regions[0, 3, 3, 3] = True  # corner neighbours: one 2-voxel component
    out = apply_postprocess(regions.copy(), SPACING, PostprocessSpec(min_volume_mm3={"WT": 2}))
    assert out[0].sum() == 2


def test_largest_ratio_drops_components_small_against_the_largest():
    regions = _regions()
    out = apply_postprocess(regions.copy(), SPACING, PostprocessSpec(min_largest_ratio={"WT": 0.01}))
    assert not out[0, 30:33, 30:33, 30:33].any() and out[0, 2:18, 2:18, 2:18].all()  # 27 < 0.01 * 4096 = 41


def test_dropping_a_tc_component_clears_et_in_it_and_leaves_wt():
    regions = _regions()
    out = apply_postprocess(regions.copy(), SPACING, PostprocessSpec(min_volume_mm3={"TC": 2000}))
    assert not out[1].any() and not out[2].any()
    assert (out[0] == regions[0]).all()


def test_et_to_ncr_fires_below_its_threshold_and_not_above():
    regions = _regions()  # ET: 216 voxels
    below = apply_postprocess(regions.copy(), SPACING, PostprocessSpec(et_to_ncr_below_mm3=217))
    assert not below[2].any() and (below[1] == regions[1]).all()  # the ET voxels stay in TC
    above = apply_postprocess(regions.copy(), SPACING, PostprocessSpec(et_to_ncr_below_mm3=216))
    assert (above == regions).all()


def test_no_postprocess_changes_nothing():
    regions = _regions()
    assert (apply_postprocess(regions.copy(), SPACING, NO_POSTPROCESS) == regions).all()


def test_masks_are_nested_as_the_label_map_reads_them_before_components_are_dropped():
    regions = np.zeros((3, 20, 20, 20), bool)
    regions[0, 2:6, 2:6, 2:6] = True
    regions[1, 12:14, 12:14, 12:14] = True  # a TC speck outside WT: edema-free core in the label map
    out = apply_postprocess(regions.copy(), SPACING, PostprocessSpec(min_volume_mm3={"WT": 10}))
    assert not out[:, 12:14, 12:14, 12:14].any() and out[0, 2:6, 2:6, 2:6].all()
