"""Resampling between a case's voxel grid and a model's spacing, with nnU-Net v2's exact semantics.

A model trained by nnU-Net sees its inputs at the plans' target spacing: the (cropped) image is resampled to
it before the network (third order for the data), and the blended logits are resampled back to the cropped
input's grid after it (first order), before the output activation. Both go through nnU-Net's
``resample_data_or_seg_to_shape``, re-implemented here without torch, scikit-image or nnU-Net:

- every channel is interpolated in float64 with ``scipy.ndimage.zoom(..., mode="nearest", grid_mode=True)``
  (what ``skimage.transform.resize(mode="edge", anti_aliasing=False)`` calls), then clipped to the range of
  the values it was interpolated from (``resize``'s default ``clip=True``), and cast back to the input dtype;
- when the voxels are anisotropic (largest over smallest spacing above :data:`ANISOTROPY_THRESHOLD`, of the
  current spacing first, else of the new one) and exactly one axis is the coarse one, each slice across
  that axis is resized in 2D at the given order (and clipped per slice), and the coarse axis is then
  interpolated on its own at ``order_z`` (0: nearest) with ``map_coordinates(mode="nearest")``.

:func:`resample_to_shape` is the one function; :func:`shape_at_spacing` says which shape a spacing gives.
Arrays are channel-first ``(C, *spatial)``; spacings and shapes follow the spatial axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["ANISOTROPY_THRESHOLD", "Resampling", "resample_to_shape", "separate_axis", "shape_at_spacing"]

#: Spacing ratio above which nnU-Net resamples the coarse axis apart (``nnunetv2.configuration.ANISO_THRESHOLD``).
ANISOTROPY_THRESHOLD = 3.0


@dataclass(frozen=True, kw_only=True)
class Resampling:
    """How one kind of array is resampled: nnU-Net's ``resampling_fn_*_kwargs``.

    Attributes:
        order: spline order within the fine axes (nnU-Net: 3 for data, 1 for logits).
        order_z: spline order along the coarse axis when it is resampled apart (nnU-Net: 0).
        force_separate_z: ``None`` decides from the spacings; ``True``/``False`` forces it.
        anisotropy_threshold: the spacing ratio above which the coarse axis is resampled apart.
    """

    order: int = 3
    order_z: int = 0
    force_separate_z: bool | None = None
    anisotropy_threshold: float = ANISOTROPY_THRESHOLD

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able dict (the contract stores it)."""
        return {"order": self.order, "order_z": self.order_z, "force_separate_z": self.force_separate_z,
                "anisotropy_threshold": self.anisotropy_threshold}

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> Resampling:
        """Inverse of :meth:`to_dict`; also reads nnU-Net's kwargs (``separate_z_anisotropy_threshold``)."""
        threshold = values.get("anisotropy_threshold", values.get("separate_z_anisotropy_threshold",
                                                                   ANISOTROPY_THRESHOLD))
        force = values.get("force_separate_z")
        return cls(order=int(values.get("order", 3)), order_z=int(values.get("order_z", 0)),
                   force_separate_z=None if force is None else bool(force), anisotropy_threshold=float(threshold))


def shape_at_spacing(shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]) -> tuple[int, ...]:
    """The shape a grid of ``shape`` voxels at ``spacing`` has at ``new_spacing`` (nnU-Net's ``compute_new_shape``:
    each axis rounded to the nearest integer)."""
    return tuple(int(round(old_spacing / new * size)) for size, old_spacing, new in zip(shape, spacing, new_spacing))


def _coarse_axis(spacing: Sequence[float]) -> int | None:
    """The one axis whose spacing is the largest, or ``None`` when two or three axes share it."""
    spacing = np.asarray(spacing, dtype=np.float64)
    axes = np.flatnonzero(spacing.max() / spacing == 1)
    return int(axes[0]) if len(axes) == 1 else None


def _anisotropic(spacing: Sequence[float], threshold: float) -> bool:
    return bool(np.max(spacing) / np.min(spacing) > threshold)


def separate_axis(spacing: Sequence[float], new_spacing: Sequence[float], resampling: Resampling) -> int | None:
    """The axis resampled apart (nnU-Net's ``determine_do_sep_z_and_axis``), or ``None`` for plain 3D resampling.

    The current spacing decides first, then the new one; a forced separation takes the current spacing's coarse
    axis. Two or three axes sharing the largest spacing mean no separate axis.
    """
    if resampling.force_separate_z is not None:
        return _coarse_axis(spacing) if resampling.force_separate_z else None
    for candidate in (spacing, new_spacing):
        if _anisotropic(candidate, resampling.anisotropy_threshold):
            return _coarse_axis(candidate)
    return None


def _resize(values: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """``skimage.transform.resize(values, shape, order, mode="edge", anti_aliasing=False)`` on float64 values."""
    zoom = [new / old for new, old in zip(shape, values.shape)]
    out = ndimage.zoom(values, zoom, order=order, mode="nearest", grid_mode=True)
    if order > 0:
        np.clip(out, values.min(), values.max(), out=out)
    return out


def _along_axis(values: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """Interpolate a 3D array to ``shape`` by pixel centres (align_corners=False), nearest at the borders: how
    nnU-Net resamples the coarse axis once the slices are resized."""
    scales = [old / new for old, new in zip(values.shape, shape)]
    grid = np.mgrid[tuple(slice(0, n) for n in shape)].astype(np.float64)
    for axis, scale in enumerate(scales):
        grid[axis] = scale * (grid[axis] + 0.5) - 0.5
    return ndimage.map_coordinates(values, grid, order=order, mode="nearest")


def _resample_channel(channel: np.ndarray, shape: tuple[int, ...], axis: int | None, resampling: Resampling
                      ) -> np.ndarray:
    values = channel.astype(np.float64, copy=False)
    if axis is None:
        return _resize(values, shape, resampling.order)
    slice_shape = [n for i, n in enumerate(shape) if i != axis]
    moved = np.moveaxis(values, axis, 0)
    slices = np.stack([_resize(plane, slice_shape, resampling.order) for plane in moved])
    in_plane = np.moveaxis(slices, 0, axis)
    if in_plane.shape[axis] == shape[axis]:
        return in_plane
    return _along_axis(in_plane, shape, resampling.order_z)


def resample_to_shape(data: np.ndarray, shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float],
                      resampling: Resampling) -> np.ndarray:
    """Resample channel-first ``data`` to the spatial ``shape`` as nnU-Net's ``resample_data_or_seg_to_shape``
    does for images and logits (``is_seg=False``).

    Args:
        data: ``(C, *spatial)`` array (3 spatial axes).
        shape: the spatial shape wanted.
        spacing: the current voxel spacing (decides the separate axis, see :func:`separate_axis`).
        new_spacing: the spacing of ``shape``.
        resampling: orders and the separate-axis rule.

    Returns:
        A new array of ``data``'s dtype, or ``data`` itself when the shape does not change (as nnU-Net).

    Raises:
        ValueError: ``data`` is not channel-first 3D, or ``shape`` has another number of axes.
    """
    if data.ndim != 4 or len(shape) != 3:
        raise ValueError(f"resampling takes (C, z, y, x) data to a 3D shape, got {data.shape} -> {tuple(shape)}")
    shape = tuple(int(n) for n in shape)
    if tuple(data.shape[1:]) == shape:
        return data
    axis = separate_axis(spacing, new_spacing, resampling)
    out = np.empty((data.shape[0], *shape), dtype=data.dtype)
    for index, channel in enumerate(data):
        out[index] = _resample_channel(channel, shape, axis, resampling)
    return out
