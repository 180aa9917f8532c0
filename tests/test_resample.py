"""bratsx.resample reproduces nnU-Net's resample_data_or_seg_to_shape, and resampling there and back keeps the grid."""

import numpy as np
import pytest

from bratsx.resample import Resampling, resample_to_shape, separate_axis, shape_at_spacing

nnunet_resampling = pytest.importorskip("nnunetv2.preprocessing.resampling.default_resampling")

# (current spacing, new spacing): isotropic, mildly anisotropic, thick slices on each axis (separate axis), to and
# from the coarse grid, and two axes sharing the largest spacing (no separate axis).
SPACINGS = [
    ((1.0, 1.0, 1.0), (1.5, 1.2, 0.8)),
    ((1.0, 1.0, 1.0), (4.0, 1.0, 1.0)),
    ((4.0, 1.0, 1.0), (1.0, 1.0, 1.0)),
    ((1.0, 3.5, 1.0), (1.0, 1.0, 1.0)),
    ((0.9, 0.9, 5.5), (1.0, 1.0, 1.0)),
    ((1.0, 1.0, 1.0), (0.8, 0.8, 3.2)),
    ((3.5, 3.5, 1.0), (1.0, 1.0, 1.0)),
]


@pytest.mark.parametrize("order", [3, 1])
@pytest.mark.parametrize(("spacing", "new_spacing"), SPACINGS)
def test_matches_nnunet_resample_data_or_seg_to_shape_exactly(spacing, new_spacing, order):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((2, 14, 17, 12)).astype(np.float32) * 100
    shape = shape_at_spacing(data.shape[1:], spacing, new_spacing)
    assert shape == tuple(nnunet_resampling.compute_new_shape(data.shape[1:], spacing, new_spacing))
    expected = nnunet_resampling.resample_data_or_seg_to_shape(data, shape, spacing, new_spacing, False, order, 0,
                                                               None)
    got = resample_to_shape(data, shape, spacing, new_spacing, Resampling(order=order))
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("force", [True, False])
def test_forced_separation_matches_nnunet(force):
    data = np.random.default_rng(1).standard_normal((1, 10, 12, 9)).astype(np.float32)
    spacing, new_spacing = (2.0, 1.0, 1.0), (1.0, 0.7, 0.7)
    shape = shape_at_spacing(data.shape[1:], spacing, new_spacing)
    expected = nnunet_resampling.resample_data_or_seg_to_shape(data, shape, spacing, new_spacing, False, 3, 1, force)
    got = resample_to_shape(data, shape, spacing, new_spacing, Resampling(order=3, order_z=1, force_separate_z=force))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("spacing", "new_spacing"), SPACINGS)
def test_separate_axis_is_nnunets(spacing, new_spacing):
    do_separate, axis = nnunet_resampling.determine_do_sep_z_and_axis(None, spacing, new_spacing)
    assert separate_axis(spacing, new_spacing, Resampling()) == (axis if do_separate else None)


@pytest.mark.parametrize(("spacing", "new_spacing"), SPACINGS)
def test_round_trip_returns_to_the_input_grid(spacing, new_spacing):
    """To the model's spacing and back: the original shape, and a smooth volume close to where it started (within
    15% on average: a 4x coarser axis interpolated by nearest neighbour, as nnU-Net does, loses that much)."""
    z, y, x = np.meshgrid(*(np.linspace(0, 1, n) for n in (20, 22, 18)), indexing="ij")
    data = (np.sin(3 * z) + np.cos(2 * y) * x)[None].astype(np.float32)
    there = resample_to_shape(data, shape_at_spacing(data.shape[1:], spacing, new_spacing), spacing, new_spacing,
                              Resampling(order=3))
    back = resample_to_shape(there, data.shape[1:], new_spacing, spacing, Resampling(order=1))
    assert back.shape == data.shape
    assert np.abs(back - data).mean() < 0.15 * np.abs(data).mean()


def test_same_shape_is_returned_untouched():
    data = np.zeros((1, 4, 5, 6), dtype=np.float32)
    assert resample_to_shape(data, (4, 5, 6), (1, 1, 1), (2, 2, 2), Resampling()) is data


def test_resampling_round_trips_through_its_dict():
    kwargs = {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None}
    resampling = Resampling.from_dict(kwargs)
    assert resampling == Resampling(order=1)
    assert Resampling.from_dict(resampling.to_dict()) == resampling
