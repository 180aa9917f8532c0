"""Where a volume sits in the scanner, and how to bring it to the model's orientation and back.

Models see every case in one *canonical* voxel orientation: array axes (superior, posterior,
left), nibabel axis codes ``"SPL"``. That is BraTS's own L,P,S storage read in C order, i.e. a
``(z, y, x)`` array, the convention of SimpleITK and nnU-Net: a BraTS volume, stored x-fastest,
becomes the canonical array with no reordering of its bytes (a transposed C-ordered copy would
cost about ten times more per volume than the float32 conversion itself).

Other orientations (RAS from many converters, oblique acquisitions) are permuted and flipped to
the nearest canonical axes; nothing is resampled, so the way back is exact and each output lands
on its input's grid with its input's header.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

__all__ = ["CANONICAL_ORIENTATION", "Geometry", "affine_problem"]

#: Voxel-axis orientation of every array the models see (nibabel axis codes): (z, y, x) of BraTS.
CANONICAL_ORIENTATION = "SPL"

#: Smallest ratio of the smallest to the largest voxel-axis length an affine may have: below it, the
#: voxel axes cannot be told apart (an all-zero sform, a zero voxel size) and no orientation exists.
MIN_AXIS_RATIO = 1e-6


def affine_problem(affine: np.ndarray) -> str | None:
    """Why ``affine`` cannot orient a volume, or ``None`` when it can.

    A voxel-to-world affine must be finite and its 3x3 part far from singular; otherwise the
    orientation of its axes is undefined (nibabel then fails deep inside with a ``LinAlgError`` or
    returns no axis codes).

    Args:
        affine: a 4x4 voxel-to-world matrix.

    Returns:
        The problem in a few words, or ``None``.
    """
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        return f"shape {affine.shape}, not 4x4"
    if not np.isfinite(affine).all():
        return "NaN or infinite entries"
    lengths = np.linalg.svd(affine[:3, :3], compute_uv=False)
    if lengths[-1] <= MIN_AXIS_RATIO * lengths[0]:
        return "singular (all zeros, or a zero voxel size)"
    return None


@dataclass(frozen=True)
class Geometry:
    """The grid of one case as stored on disk, and the map to the canonical orientation.

    Attributes:
        shape: spatial shape as stored.
        affine: voxel-to-world matrix as stored (4x4).
        header: NIfTI header of the reference image, reused when writing outputs.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    header: nib.Nifti1Header

    @property
    def orientation(self) -> str:
        """Axis codes of the stored volume, e.g. ``"LPS"`` or ``"RAS"``."""
        return "".join(nib.aff2axcodes(self.affine))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the stored axes."""
        return tuple(float(z) for z in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))

    @property
    def _to_canonical(self) -> np.ndarray:
        return ornt_transform(io_orientation(self.affine), axcodes2ornt(CANONICAL_ORIENTATION))

    @property
    def _from_canonical(self) -> np.ndarray:
        return ornt_transform(axcodes2ornt(CANONICAL_ORIENTATION), io_orientation(self.affine))

    def _along_canonical_axes(self, values: tuple) -> tuple:
        """Per-axis values of the stored volume, reordered to the canonical axes."""
        reordered = [values[0]] * 3
        for source_axis, target_axis in enumerate(self._to_canonical[:, 0].astype(int)):
            reordered[target_axis] = values[source_axis]
        return tuple(reordered)

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        """Spatial shape once in canonical orientation."""
        return self._along_canonical_axes(self.shape)

    @property
    def canonical_spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the canonical axes."""
        return self._along_canonical_axes(self.spacing)

    def to_canonical(self, volume: np.ndarray) -> np.ndarray:
        """A stored-orientation 3D volume as a canonical view (transposes and flips, no copy)."""
        return apply_orientation(volume, self._to_canonical)

    def from_canonical(self, volume: np.ndarray) -> np.ndarray:
        """A canonical 3D volume back in the stored orientation (a view, no copy)."""
        return apply_orientation(volume, self._from_canonical)
