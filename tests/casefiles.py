"""Test helpers: tiny cases written in every layout, and the location of the optional real data."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bratsx.cases import Layout
from bratsx.labels import MODALITY_ORDER, Modality
from bratsx.synth import FILE_NAMES, brats_affine

#: Real BraTS data shipped beside the repository in the development environment (never in git).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

SMALL_SHAPE = (20, 24, 16)



def save(volume: np.ndarray, path: Path, affine: np.ndarray | None = None) -> Path:
    """Write a NIfTI file with the BraTS LPS affine unless one is given."""
    affine = brats_affine(volume.shape[:3]) if affine is None else affine
    nib.save(nib.Nifti1Image(volume, affine), path)
    return path


def modality_volume(modality: Modality, shape=SMALL_SHAPE) -> np.ndarray:
    """A brain-like blob whose voxels carry the modality's code (FLAIR 10, T1 20, T1ce 30, T2 40)."""
    volume = np.zeros(shape, dtype=np.int16)
    inner = tuple(slice(2, s - 2) for s in shape)
    volume[inner] = 10 * (MODALITY_ORDER.index(modality) + 1)
    return volume


def label_volume(values: tuple[int, ...], shape=SMALL_SHAPE) -> np.ndarray:
    """A label map with a slab of each value along the first axis."""
    labels = np.zeros(shape, dtype=np.uint8)
    for i, value in enumerate(values):
        labels[4 + 2 * i : 6 + 2 * i, 5:15, 4:10] = value
    return labels


def write_folder_case(
    root: Path, layout: Layout, case_id: str, label_values: tuple[int, ...] | None = (1, 2, 4), shape=SMALL_SHAPE
) -> Path:
    """Write one case folder in a BraTS or plain layout; returns the folder."""
    folder = root / case_id
    folder.mkdir(parents=True)
    names = FILE_NAMES[layout]
    for modality in MODALITY_ORDER:
        save(modality_volume(modality, shape), folder / f"{names[modality].format(id=case_id)}.nii.gz")
    if label_values is not None:
        save(label_volume(label_values, shape), folder / f"{names[None].format(id=case_id)}.nii.gz")
    return folder


def write_msd_case(dataset: Path, case_id: str, shape=SMALL_SHAPE) -> Path:
    """Write one MSD case (4D image in imagesTr, label in labelsTr); returns the dataset folder."""
    (dataset / "imagesTr").mkdir(parents=True, exist_ok=True)
    (dataset / "labelsTr").mkdir(exist_ok=True)
    four_d = np.stack([modality_volume(m, shape) for m in MODALITY_ORDER], axis=-1)
    save(four_d, dataset / "imagesTr" / f"{case_id}.nii.gz")
    save(label_volume((1, 2, 3), shape), dataset / "labelsTr" / f"{case_id}.nii.gz")
    return dataset


def real_data(subfolder: str) -> Path:
    """A folder of the shared real data, or skip the test when it is absent (a user's clone)."""
    path = SHARED_DATA / subfolder
    if not path.is_dir():
        pytest.skip(f"real data not available at {path}")
    return path
