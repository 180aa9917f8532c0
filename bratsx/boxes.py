"""Bounding boxes of masks: the one implementation behind the brain crop (preprocessing), the report's
framing, and the work areas of HD95 and the lesion-wise metrics.

Each projection after the first scans only the slab found so far, which keeps a box at about a
millisecond on a 240x240x155 volume.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bounding_box", "whole"]


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """The box around the ``True`` voxels of ``mask``, grown by ``margin`` voxels per side and clipped to the array.

    Args:
        mask: a boolean (or nonzero-means-inside) array of any dimension.
        margin: voxels added on every side.

    Returns:
        One slice per axis, or ``None`` when the mask is empty.
    """
    found: list[tuple[int, int]] = []
    view = mask
    for axis in range(mask.ndim):
        present = np.flatnonzero(view.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if present.size == 0:
            return None
        found.append((int(present[0]), int(present[-1]) + 1))
        view = view[(slice(None),) * axis + (slice(*found[-1]),)]  # later axes scan only this slab
    return tuple(slice(max(start - margin, 0), min(stop + margin, size))
                 for (start, stop), size in zip(found, mask.shape))


def whole(shape: tuple[int, ...]) -> tuple[slice, ...]:
    """The box of a whole array of ``shape`` (what an empty mask's crop falls back to)."""
    return tuple(slice(0, n) for n in shape)
