"""The atlases come from installed files: the BraTS grid exactly, a brain-sized template on it, nothing downloaded."""

from __future__ import annotations

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")
pytest.importorskip("nilearn")

from casefiles import real_data

from bratsx.prepare.atlas import BRATS_SIZE, Atlas, load_atlas


@pytest.mark.parametrize("atlas, size", [(Atlas.SRI24, BRATS_SIZE), (Atlas.MNI152, (197, 233, 189))])
def test_atlas_grid_and_brain(atlas, size):
    loaded = load_atlas(atlas)
    assert loaded.image.GetSize() == size and loaded.image.GetSpacing() == (1.0, 1.0, 1.0)
    brain_ml = float(sitk.GetArrayViewFromImage(loaded.mask).sum()) * np.prod(loaded.image.GetSpacing()) / 1000
    assert 1000 <= brain_ml <= 2300  # MNI152 is larger than most brains; BraTS-placed, it shrinks towards them
    assert "nilearn" in loaded.source


@pytest.mark.real_data
def test_sri24_grid_is_the_brats_grid():
    """Same size, origin, spacing and direction as a BraTS volume, and the template's brain overlaps BraTS brains."""
    path = real_data("brats2018") / "Brats18_CBICA_AME_1" / "Brats18_CBICA_AME_1_t1.nii.gz"
    brats = sitk.ReadImage(str(path))
    atlas = load_atlas(Atlas.SRI24)
    assert atlas.image.GetSize() == brats.GetSize()
    assert atlas.image.GetOrigin() == pytest.approx(brats.GetOrigin())
    assert atlas.image.GetDirection() == pytest.approx(brats.GetDirection())
    a = sitk.GetArrayFromImage(atlas.mask) > 0
    b = sitk.GetArrayFromImage(brats) > 0
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.85
