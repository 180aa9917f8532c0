"""Fit ``bratsx/prepare/data/brats_to_mni152.tfm``: where the MNI152 template sits on the BraTS grid.

The fixed image is the mean of the z-scored T1 volumes of the BraTS cases in ``DATA`` (default
``../shared/data/brats2018``; the BraTS volumes share one grid); the moving image is nilearn's MNI152
template. The affine found maps BraTS-grid points to MNI152 points; bratsx's ``sri24`` atlas is the
template resampled through it. Run: ``python benchmarks/fit_brats_atlas.py [DATA]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from bratsx.prepare.atlas import DATA, Atlas, load_atlas
from bratsx.prepare.register import affine_to_atlas


def mean_t1(folder: Path) -> sitk.Image:
    """The mean z-scored T1 of every BraTS case under ``folder`` (z-scored inside the non-zero brain)."""
    total, reference = None, None
    paths = sorted(folder.glob("*/*_t1.nii.gz"))
    for path in paths:
        image = sitk.ReadImage(str(path), sitk.sitkFloat32)
        array = sitk.GetArrayFromImage(image)
        brain = array > 0
        array = np.where(brain, (array - array[brain].mean()) / array[brain].std() + 3.0, 0.0)
        total = array if total is None else total + array
        reference = image
    mean = sitk.GetImageFromArray((total / len(paths)).astype(np.float32))
    mean.CopyInformation(reference)
    return mean


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared/data/brats2018"
    fixed = mean_t1(folder)
    template = load_atlas(Atlas.MNI152)
    found = affine_to_atlas("BraTS mean T1", fixed, template.image, sitk.Cast(fixed > 0.5, sitk.sitkUInt8))
    print(f"mutual information {found.mi_before:.3f} -> {found.mi_after:.3f}; {found.stop}")
    sitk.WriteTransform(found.transform, str(DATA / "brats_to_mni152.tfm"))


if __name__ == "__main__":
    main()
