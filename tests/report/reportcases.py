"""Small cases for the report tests: a synthetic brain with a tumour and an orientation marker.

The marker is a bright cube in T1ce at the patient's right, anterior and superior, so a picture
shows at once whether the orientation is right. A case can be stored in BraTS's L,P,S voxel order
or flipped to R,A,S (same anatomy, other storage).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from bratsx.labels import LabelConvention, convert_labels
from bratsx.synth import synthesize_case

SHAPE = (48, 48, 40)
#: Stored L,P,S voxel box of the marker: small i (right), small j (anterior), large k (superior).
MARKER = (slice(3, 9), slice(3, 9), slice(31, 37))
MARKER_VALUE = 30000
T1CE = 2


def ras_affine(shape: tuple[int, int, int]) -> np.ndarray:
    """The R,A,S affine putting every voxel of a flipped L,P,S volume at its original world position."""
    affine = np.eye(4)
    affine[0, 3] = -(shape[0] - 1)
    return affine


def _store(volume: np.ndarray, affine: np.ndarray, ras: bool) -> nib.Nifti1Image:
    if ras:
        return nib.Nifti1Image(np.ascontiguousarray(volume[::-1, ::-1, :]), ras_affine(volume.shape))
    return nib.Nifti1Image(volume, affine)


def write_case(root: Path, case_id: str, *, ras: bool = False, seed: int = 0,
               prediction_dir: Path | None = None,
               prediction_convention: LabelConvention = LabelConvention.BRATS2020) -> Path:
    """Write a BraTS 2018-2021 case folder (and its label map as a prediction); returns the folder."""
    case = synthesize_case(SHAPE, seed)
    image = case.image.copy()
    image[(T1CE, *MARKER)] = MARKER_VALUE
    folder = root / case_id
    folder.mkdir(parents=True)
    for channel, suffix in enumerate(("flair", "t1", "t1ce", "t2")):
        nib.save(_store(image[channel], case.affine, ras), folder / f"{case_id}_{suffix}.nii.gz")
    labels = convert_labels(case.labels, LabelConvention.BRATS2023, LabelConvention.BRATS2020)
    nib.save(_store(labels, case.affine, ras), folder / f"{case_id}_seg.nii.gz")
    if prediction_dir is not None:
        prediction_dir.mkdir(parents=True, exist_ok=True)
        predicted = convert_labels(case.labels, LabelConvention.BRATS2023, prediction_convention)
        nib.save(_store(predicted, case.affine, ras), prediction_dir / f"{case_id}.nii.gz")
    return folder
