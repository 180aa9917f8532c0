"""Does a brain mask cut off tumour? A check that runs before segmentation, on the FLAIR and the mask.

A skull stripper that mistakes a tumour at the brain's edge for scalp leaves part of it outside the mask;
the atlas-space case then has the tumour sliced flat, and every segmentation of it is wrong without any
error. The volume check (:func:`~bratsx.prepare.skullstrip.plausible_mask`) cannot see this: a cut of
20 mL changes a brain's volume by about 1%.

**The measure** (:func:`cut_off_ml`): tumour and oedema are bright on FLAIR and not on T1 (T1 shows them
iso- or hypointense). A correct mask ends at the cerebrospinal fluid and the skull, so lesion-like tissue
inside it does not continue outside; a mask that cuts through a lesion has the lesion on both sides of its
edge. So: voxels at least :data:`BRIGHT` times the mask's median FLAIR and at most :data:`T1_AT_MOST` times
its median T1 are *lesion-like* (scalp fat and marrow, bright on FLAIR too, are brighter still on T1: on the
raw case's 5.5 mm FLAIR they touch the brain's edge at the vertex once slices are interpolated); lesion-like
regions thinner than a ball of radius :data:`OPEN_MM` are dropped (a morphological opening: a rim along the
edge is no lesion); the lesion-like voxels outside the mask, between :data:`TIGHT_MM` and :data:`SHELL_MM`
from it, connected through lesion-like voxels to lesion-like voxels inside it, are *cut off*, and their
volume in mL is the measure. Voxels closer than :data:`TIGHT_MM` are not counted: a mask a millimetre or two
tight along a lesion that reaches the cortex is a deepbet mask's ordinary error, not a cut. The case stops
when the measure exceeds :data:`MAX_CUT_OFF_ML`.

**Calibration** (``benchmarks/mask_check.py``, ``benchmarks/results/mask_check-*.json``): on the 16 BraTS
2018 cases (their non-zero region is the true brain), the intact masks and masks eroded by 1 and 2 mm
(tighter than any deepbet mask measured on them) against masks with the brain beyond a plane through the
tumour removed; and the raw case TCGA-FG-6692 with its deepbet mask, which must pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .skullstrip import SkullStripError

__all__ = ["BRIGHT", "MAX_CUT_OFF_ML", "OPEN_MM", "SHELL_MM", "T1_AT_MOST", "TIGHT_MM", "CutOff", "check_cut_off",
           "cut_off_ml"]

#: FLAIR at least this multiple of the mask's median is bright (lesion-like). On the 16 BraTS 2018 cases
#: the median of the whole tumour is 1.1-2.1 times the brain's median, normal tissue's 95th percentile 1.1-1.5.
BRIGHT = 1.3
#: ... and T1 at most this multiple of the mask's median T1 (fat and marrow are brighter: not lesions).
T1_AT_MOST = 1.2
#: Cut-off tissue is counted between these distances (mm) outside the mask.
TIGHT_MM = 3.0
SHELL_MM = 8.0
#: Bright structures thinner than a ball of this radius (mm) are not lesions: a bright rim of cortex or
#: dura along the brain's edge, which a mask a little tight leaves outside.
OPEN_MM = 2.0
#: Cut-off volume (mL) above which the case stops; calibrated in ``benchmarks/mask_check.py``.
MAX_CUT_OFF_ML = 0.5


@dataclass(frozen=True)
class CutOff:
    """What the check measured: lesion-like tissue cut off (mL) and lesion-like tissue inside the mask (mL)."""

    cut_off_ml: float
    bright_inside_ml: float


def _opened(region: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """``region`` without its parts thinner than a ball of radius :data:`OPEN_MM` (a bright rim along the edge)."""
    from scipy import ndimage

    radius = [max(1, round(OPEN_MM / s)) for s in spacing]
    grid = np.indices([2 * r + 1 for r in radius]) - np.array(radius).reshape(3, 1, 1, 1)
    ball = (grid * np.array(spacing).reshape(3, 1, 1, 1)) ** 2
    return ndimage.binary_opening(region, ball.sum(axis=0) <= OPEN_MM ** 2)


def _around(mask: np.ndarray, spacing: tuple[float, float, float]) -> tuple[slice, ...]:
    """The mask's bounding box grown by :data:`SHELL_MM` plus the opening's radius and a voxel, per axis."""
    box = []
    for axis, step in enumerate(spacing):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        found = np.flatnonzero(mask.any(axis=others))
        margin = int(np.ceil((SHELL_MM + OPEN_MM) / step)) + 1
        box.append(slice(max(0, found[0] - margin), found[-1] + margin + 1))
    return tuple(box)


def cut_off_ml(flair: np.ndarray, t1: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float]) -> CutOff:
    """The volume of lesion-like tissue outside ``mask`` that continues lesion-like tissue inside it.

    Args:
        flair: FLAIR on the mask's grid (any intensity scale; zero where there is no image).
        t1: T1 (pre-contrast) on the same grid.
        mask: the brain mask, boolean, same shape.
        spacing: the grid's voxel size (mm) along the array's axes.

    Returns:
        The cut-off and inside bright volumes; both 0 for an empty mask.
    """
    from scipy import ndimage

    mask = mask.astype(bool)
    if not mask.any():
        return CutOff(0.0, 0.0)
    box = _around(mask, spacing)  # nothing beyond SHELL_MM of the mask is measured: work on its box
    flair, t1, mask = flair[box], t1[box], mask[box]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    bright = (flair >= BRIGHT * float(np.median(flair[mask]))) & (t1 <= T1_AT_MOST * float(np.median(t1[mask])))
    outside = ~mask
    distance = ndimage.distance_transform_edt(outside, sampling=spacing)
    near = distance <= SHELL_MM
    bright_near = _opened(bright & near, spacing)  # near includes the mask itself (distance 0)
    labels, count = ndimage.label(bright_near, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return CutOff(0.0, 0.0)
    touches_inside = np.zeros(count + 1, bool)
    touches_inside[np.unique(labels[bright_near & mask])] = True
    touches_inside[0] = False
    crossing = touches_inside[labels] & (distance > TIGHT_MM)
    return CutOff(round(float(crossing.sum()) * voxel_ml, 2), round(float((bright & mask).sum()) * voxel_ml, 2))


def check_cut_off(case_id: str, flair: np.ndarray, t1: np.ndarray, mask: np.ndarray,
                  spacing: tuple[float, float, float], limit_ml: float = MAX_CUT_OFF_ML) -> CutOff:
    """:func:`cut_off_ml`, raising when the mask cuts off more than ``limit_ml`` of bright tissue.

    Raises:
        SkullStripError: the mask cuts off lesion-like tissue (one line: how much, and what to do).
    """
    found = cut_off_ml(flair, t1, mask, spacing)
    if found.cut_off_ml > limit_ml:
        raise SkullStripError(case_id, f"the brain mask cuts off {found.cut_off_ml:.1f} mL of lesion-like tissue "
                                       f"(limit {limit_ml:g} mL): a tumour at the brain's edge was probably "
                                       f"stripped with the skull; check the FLAIR, or skull-strip the case "
                                       f"yourself and pass --skull-strip none")
    return found
