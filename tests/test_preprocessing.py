import numpy as np
import pytest

from bratsx.preprocessing import CropBox, brain_mask, crop_box, paste, preprocess, zscore_in_mask


def hollow_ball(shape=(24, 24, 24), outer=9, inner=4):
    grid = np.indices(shape) - np.array(shape)[:, None, None, None] // 2
    radius = np.sqrt((grid**2).sum(axis=0))
    return (radius <= outer) & (radius > inner), radius <= outer


def test_brain_mask_is_the_union_of_modalities_with_holes_filled():
    shell, ball = hollow_ball()
    image = np.zeros((4, *shell.shape), np.float32)
    image[0][shell & (np.indices(shell.shape)[0] < 12)] = 1.0  # one half of the shell in FLAIR
    image[3][shell & (np.indices(shell.shape)[0] >= 12)] = 2.0  # the other half in T2
    assert np.array_equal(brain_mask(image), ball)


def test_crop_box_adds_the_margin_and_clips_at_the_border():
    mask = np.zeros((10, 10, 10), bool)
    mask[1:4, 5:7, 8:10] = True
    assert crop_box(mask, margin=2) == CropBox((0, 3, 6), (6, 9, 10))
    assert crop_box(mask, margin=0).shape == (3, 2, 2)


def test_crop_box_of_an_empty_mask_is_the_whole_volume():
    assert crop_box(np.zeros((4, 5, 6), bool)) == CropBox((0, 0, 0), (4, 5, 6))


def test_zscore_gives_zero_mean_unit_std_inside_and_zero_outside():
    rng = np.random.default_rng(0)
    image = rng.normal(500, 80, (2, 10, 10, 10)).astype(np.float32)
    image[1] *= 12  # a channel at another intensity scale
    mask = np.zeros((10, 10, 10), bool)
    mask[2:8, 2:8, 2:8] = True
    zscore_in_mask(image, mask)
    for channel in image:
        assert channel[mask].mean() == pytest.approx(0, abs=1e-5)
        assert channel[mask].std() == pytest.approx(1, abs=1e-4)
        assert not channel[~mask].any()
    assert image.dtype == np.float32


def test_zscore_of_a_constant_channel_only_centres_it():
    image = np.full((1, 4, 4, 4), 7.0, np.float32)
    zscore_in_mask(image, np.ones((4, 4, 4), bool))
    assert not image.any()


def test_preprocess_crops_normalises_and_pastes_back_in_place():
    rng = np.random.default_rng(1)
    image = np.zeros((4, 30, 32, 28), np.float32)
    image[:, 6:20, 8:25, 5:21] = rng.uniform(100, 900, (4, 14, 17, 16))
    original = image.copy()
    result = preprocess(image, margin=2)
    assert np.array_equal(image, original)  # the input is left alone
    assert result.box == CropBox((4, 6, 3), (22, 27, 23))
    assert result.image.shape == (4, 18, 21, 20)
    assert result.mask.sum() == 14 * 17 * 16
    restored = paste(result.mask, result.box, result.full_shape)
    assert np.array_equal(restored, np.any(original != 0, axis=0))


def test_preprocess_copies_even_when_the_brain_fills_the_volume():
    image = np.ones((4, 6, 6, 6), np.float32)
    preprocess(image)
    assert np.all(image == 1.0)


def test_paste_keeps_leading_channel_axes():
    cropped = np.ones((3, 2, 2, 2), np.float32)
    full = paste(cropped, CropBox((1, 1, 1), (3, 3, 3)), (4, 4, 4), fill=-1)
    assert full.shape == (3, 4, 4, 4)
    assert full[:, 1:3, 1:3, 1:3].min() == 1 and full[:, 0].max() == -1
