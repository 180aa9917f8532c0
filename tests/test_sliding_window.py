import numpy as np
import pytest

from bratsx.sliding_window import (
    TileAccumulator,
    gaussian_importance_map,
    monai_gaussian_importance_map,
    plan_tiles,
    sliding_window_predict,
    tile_starts,
)


@pytest.mark.parametrize(
    "size,patch,overlap,expected",
    [
        (64, 64, 0.5, [0]),
        (96, 64, 0.5, [0, 32]),  # ceil(32 / 32) + 1 = 2 tiles
        (100, 64, 0.5, [0, 18, 36]),  # ceil(36 / 32) + 1 = 3 tiles, evenly spread
        (160, 64, 0.0, [0, 48, 96]),  # ceil(96 / 64) + 1 = 3
    ],
)
def test_tile_starts_are_evenly_spread_from_first_to_last_voxel(size, patch, overlap, expected):
    assert tile_starts(size, patch, overlap) == expected


def test_tile_starts_reject_an_axis_smaller_than_the_patch():
    with pytest.raises(ValueError, match="smaller than the patch"):
        tile_starts(10, 16, 0.5)


def test_gaussian_map_is_nnunets_peaked_at_the_middle_voxel_and_positive():
    weights = gaussian_importance_map((16, 12, 9))
    assert weights.shape == (16, 12, 9) and weights.dtype == np.float32
    assert weights[8, 6, 4] == pytest.approx(1.0, abs=1e-6) and weights.max() == weights[8, 6, 4]
    assert weights.min() > 0
    assert gaussian_importance_map((16, 12, 9)) is weights  # computed once per patch size
    assert not weights.flags.writeable
    nnunet = pytest.importorskip("nnunetv2.inference.sliding_window_prediction")
    torch = pytest.importorskip("torch")
    theirs = nnunet.compute_gaussian((16, 12, 9), 1 / 8, 1, torch.float32, torch.device("cpu")).numpy()
    np.testing.assert_allclose(weights, theirs, rtol=1e-5)


@pytest.mark.parametrize("patch", [(16, 12, 9), (32, 32, 32), (128, 128, 128)])
def test_monai_gaussian_map_is_monais_own(patch):
    """MONAI's map: centred between the middle voxels, not scaled to 1, floored at 1e-3 (the 128^3 corners)."""
    weights = monai_gaussian_importance_map(patch)
    assert weights.shape == patch and weights.dtype == np.float32 and not weights.flags.writeable
    monai_utils = pytest.importorskip("monai.data.utils")
    theirs = monai_utils.compute_importance_map(patch, mode="gaussian", sigma_scale=0.125).numpy()
    np.testing.assert_allclose(weights, theirs, rtol=1e-6, atol=0)
    assert weights.min() == theirs.min()


def test_plan_skips_tiles_without_brain():
    mask = np.zeros((32, 32, 32), bool)
    mask[:10, :10, :10] = True
    assert len(plan_tiles((32, 32, 32), (16, 16, 16), 0.0)) == 8
    assert plan_tiles((32, 32, 32), (16, 16, 16), 0.0, mask) == [(slice(0, 16), slice(0, 16), slice(0, 16))]


def linear_model(tiles: np.ndarray) -> np.ndarray:
    """A position-dependent 'network': output depends on the input and on the place within the tile."""
    ramp = np.linspace(0, 1, tiles.shape[-1], dtype=np.float32)
    return np.stack([tiles[:, 0] * 2 + ramp, tiles[:, 1] - ramp], axis=1)


def brute_force(image, patch, overlap, predict):
    """Reference: every tile, weights summed voxel by voxel in float64 with explicit loops."""
    starts = [tile_starts(s, p, overlap) for s, p in zip(image.shape[1:], patch)]
    weights = gaussian_importance_map(patch).astype(np.float64)
    total = np.zeros((2, *image.shape[1:]))
    norm = np.zeros(image.shape[1:])
    for a in starts[0]:
        for b in starts[1]:
            for c in starts[2]:
                tile = image[:, a:a + patch[0], b:b + patch[1], c:c + patch[2]]
                out = predict(tile[None])[0].astype(np.float64)
                total[:, a:a + patch[0], b:b + patch[1], c:c + patch[2]] += out * weights
                norm[a:a + patch[0], b:b + patch[1], c:c + patch[2]] += weights
    return total / norm


def test_blend_matches_a_brute_force_reference():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 20, 18, 23)).astype(np.float32)
    got = sliding_window_predict(image, (8, 8, 8), linear_model, overlap=0.5, batch_size=3)
    np.testing.assert_allclose(got, brute_force(image, (8, 8, 8), 0.5, linear_model), rtol=1e-5, atol=1e-5)


def test_a_volume_of_one_patch_gives_exactly_the_single_window_prediction():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(2, 8, 8, 8)).astype(np.float32)
    got = sliding_window_predict(image, (8, 8, 8), linear_model)
    np.testing.assert_array_equal(got, linear_model(image[None])[0])


def test_a_volume_smaller_than_the_patch_is_padded_and_cropped_back():
    image = np.ones((2, 5, 8, 7), np.float32)
    got = sliding_window_predict(image, (8, 8, 8), lambda t: t * 3)
    assert got.shape == (2, 5, 8, 7)
    np.testing.assert_allclose(got, 3.0)


def test_skipping_empty_tiles_changes_nothing_inside_the_brain():
    rng = np.random.default_rng(2)
    image = rng.normal(size=(2, 30, 30, 30)).astype(np.float32)
    mask = np.zeros((30, 30, 30), bool)
    mask[3:12, 4:14, 2:9] = True
    full = sliding_window_predict(image, (8, 8, 8), linear_model, overlap=0.5)
    skipped = sliding_window_predict(image, (8, 8, 8), linear_model, overlap=0.5, mask=mask)
    np.testing.assert_array_equal(skipped[:, mask], full[:, mask])
    assert not skipped[:, 25:, 25:, 25:].any()  # far from the brain: never predicted


def test_a_single_remaining_tile_in_a_larger_volume_is_placed_not_stretched():
    mask = np.zeros((16, 8, 8), bool)
    mask[:3] = True  # only the first of two tiles along the first axis holds brain
    got = sliding_window_predict(np.ones((1, 16, 8, 8), np.float32), (8, 8, 8), lambda t: t * 2, overlap=0.0, mask=mask)
    np.testing.assert_allclose(got[:, :8], 2.0)
    assert not got[:, 8:].any()


def test_empty_mask_is_an_error():
    with pytest.raises(ValueError, match="mask is empty"):
        sliding_window_predict(np.ones((1, 8, 8, 8), np.float32), (8, 8, 8), lambda t: t,
                               mask=np.zeros((8, 8, 8), bool))


def test_accumulator_normalises_by_the_summed_weights():
    accumulator = TileAccumulator(1, (4, 4, 6), (4, 4, 4))
    accumulator.add(np.full((1, 4, 4, 4), 2.0, np.float32), (slice(0, 4), slice(0, 4), slice(0, 4)))
    accumulator.add(np.full((1, 4, 4, 4), 2.0, np.float32), (slice(0, 4), slice(0, 4), slice(2, 6)))
    np.testing.assert_allclose(accumulator.finalize(), 2.0, rtol=1e-6)


def test_blend_matches_monai_where_the_tile_grids_coincide():
    torch = pytest.importorskip("torch")
    monai_inferers = pytest.importorskip("monai.inferers")
    # Patch 15; with overlap 0.5 MONAI steps by int(7.5) = 7 and bratsx spreads its tiles evenly; for these
    # sizes both start at 0, 7, 14, ... MONAI gets bratsx's (nnU-Net's) weights: its own floor them at 1e-3.
    patch, shape = (15, 15, 15), (29, 22, 36)
    assert [tile_starts(s, p, 0.5) for s, p in zip(shape, patch)] == [[0, 7, 14], [0, 7], [0, 7, 14, 21]]
    rng = np.random.default_rng(5)
    image = rng.normal(size=(2, *shape)).astype(np.float32)
    ours = sliding_window_predict(image, patch, linear_model, overlap=0.5, batch_size=4)
    theirs = monai_inferers.sliding_window_inference(
        torch.from_numpy(image[None]), patch, 4, lambda t: torch.from_numpy(linear_model(t.numpy())),
        overlap=0.5, mode="gaussian", roi_weight_map=torch.from_numpy(gaussian_importance_map(patch).copy()),
    )[0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_progress_is_reported_per_batch_of_tiles():
    seen = []
    sliding_window_predict(np.zeros((1, 24, 8, 8), np.float32), (8, 8, 8), lambda t: t, overlap=0.0, batch_size=2,
                           on_tiles=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 3), (3, 3)]


@pytest.mark.parametrize(("size", "patch", "overlap"), [(40, 32, 0.5), (100, 32, 0.5), (155, 128, 0.5),
                                                       (240, 128, 0.25), (77, 16, 0.9), (64, 64, 0.5)])
def test_interval_placement_is_monais_dense_patch_slices(size, patch, overlap):
    utils = pytest.importorskip("monai.inferers.utils")
    from monai.data.utils import dense_patch_slices

    from bratsx.sliding_window import Placement

    interval = utils._get_scan_interval((size,), (patch,), 1, (overlap,))
    expected = [s[0].start for s in dense_patch_slices((size,), (patch,), interval)]
    assert tile_starts(size, patch, overlap, Placement.INTERVAL) == expected


def test_constant_blending_is_monais_sliding_window_inference():
    torch = pytest.importorskip("torch")
    from monai.inferers import sliding_window_inference

    from bratsx.sliding_window import Blend, Placement

    image = np.random.default_rng(0).standard_normal((2, 37, 44, 23)).astype(np.float32)

    def network(tiles):  # position-dependent, so that tiles overlapping differently give different blends
        ramp = np.linspace(0.0, 1.0, tiles.shape[-1], dtype=np.float32)
        return np.concatenate([tiles * ramp, tiles[:, :1] ** 2], axis=1)

    got = sliding_window_predict(image, (16, 16, 16), network, overlap=0.5, batch_size=3,
                                 placement=Placement.INTERVAL, blend=Blend.CONSTANT)
    expected = sliding_window_inference(torch.from_numpy(image[None]), (16, 16, 16), 3,
                                        lambda t: torch.from_numpy(network(t.numpy())), overlap=0.5,
                                        mode="constant")[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
