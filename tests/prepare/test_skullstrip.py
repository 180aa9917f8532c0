"""Skull stripping: deepbet's steps reproduced without torch, masks checked for plausibility and on BraTS brains."""

from __future__ import annotations

import numpy as np
import pytest
from casefiles import real_data

from bratsx.prepare.skullstrip import (
    SkullStripError,
    _box,
    _resize_nearest,
    brain_mask,
    onnx_from_deepbet,
    plausible_mask,
)


@pytest.mark.parametrize("source, target", [((7, 9, 5), (16, 16, 16)), ((40, 33, 26), (16, 20, 12))])
def test_resize_matches_torch_nearest_exact(source, target):
    torch = pytest.importorskip("torch")
    volume = np.random.default_rng(0).random(source, dtype=np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(volume)[None, None], target, mode="nearest-exact")
    np.testing.assert_array_equal(_resize_nearest(volume, target), expected[0, 0].numpy())


def test_box_matches_deepbet():
    torch = pytest.importorskip("torch")
    bet = pytest.importorskip("deepbet.bet")
    small = np.zeros((16, 16, 16), np.float32)
    small[4:12, 6:10, 2:14] = 1
    theirs = bet.BrainExtraction.get_bbox_with_margin(bet.BrainExtraction, torch.from_numpy(small), (32, 40, 30), 0.1)
    ours = _box(small, (32, 40, 30))
    assert [(b.start, b.stop) for b in ours] == [(b.start, b.stop) for b in theirs] == [(6, 25), (14, 26), (1, 28)]


@pytest.mark.parametrize("voxels", [0, 100_000, 3_000_000])
def test_implausible_mask_stops_the_case_in_one_line(voxels):
    mask = np.zeros(3_000_000, bool)
    mask[:voxels] = True
    with pytest.raises(SkullStripError) as caught:
        plausible_mask("c1", mask, voxel_ml=0.001)
    assert "\n" not in str(caught.value) and "outside the plausible 700-2300 mL" in str(caught.value)


def test_plausible_mask_gives_its_volume():
    mask = np.zeros((100, 100, 150), bool)
    mask[:, :, :140] = True
    assert plausible_mask("c1", mask, voxel_ml=0.001) == pytest.approx(1400.0)


@pytest.mark.slow
@pytest.mark.real_data
def test_tumour_brain_is_covered_and_matches_deepbet(deepbet_cache):
    """On a BraTS T1 (skull already removed) the mask covers the brain (Dice >= 0.95 against the non-zero region),
    and equals deepbet's own torch pipeline."""
    import nibabel as nib
    from deepbet.bet import BrainExtraction

    path = real_data("brats2018") / "Brats18_TCIA01_378_1" / "Brats18_TCIA01_378_1_t1.nii.gz"  # the lowest Dice of 16
    volume = nib.as_closest_canonical(nib.load(path)).get_fdata(dtype=np.float32)
    mask = brain_mask(volume, onnx_from_deepbet(deepbet_cache))
    brain = volume > 0
    assert 2 * (mask & brain).sum() / (mask.sum() + brain.sum()) >= 0.95
    reference = BrainExtraction(no_gpu=True)
    theirs = reference.postprocess(reference.run_model(volume.copy()) > 0.5)
    assert 2 * (mask & theirs).sum() / (mask.sum() + theirs.sum()) >= 0.999
