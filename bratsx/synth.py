"""Synthetic BraTS-like cases, written in the exact BraTS file layouts.

Each case is a skull-stripped brain (white matter, a grey-matter ribbon, CSF at the surface and in
two ventricles) with one glioma-like tumour: a necrotic core inside an enhancing rim, surrounded by
edema, at a random position with a random size and a lumpy shape. Contrasts follow the radiology:

=========  ========  ========  ======  =======  =========  =========
modality   WM        GM        CSF     edema    ET         necrosis
=========  ========  ========  ======  =======  =========  =========
FLAIR      mid       mid+      dark    bright   bright-    mid+
T1         bright    mid       dark    dark-    dark-      dark
T1ce       bright    mid       dark    dark-    brightest  dark
T2         dark-     mid       bright  bright   mid+       bright
=========  ========  ========  ======  =======  =========  =========

Then a smooth multiplicative bias field and Gaussian noise per modality, an arbitrary intensity
scale per modality (as between scanners), zero background, int16 storage and the LPS affine of the
BraTS volumes. Every case is determined by ``(seed, index)`` alone.

Smooth random fields are sums of separable cosines (outer products of 1D arrays), which costs one
multiply-add per voxel and term, so a full 240x240x155 case takes about a second.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .atomic import atomic_folder, write_bytes_atomic
from .cases import Layout
from .errors import BratsxError
from .imageio import save_nifti_atomic
from .labels import MODALITY_ORDER, LabelConvention, Modality, Tissue, convert_labels

__all__ = ["BRATS_SHAPE", "FILE_NAMES", "SyntheticCase", "brats_affine", "synthesize_case", "write_synthetic_dataset"]

#: Shape of a BraTS volume (240 x 240 x 155 at 1 mm).
BRATS_SHAPE = (240, 240, 155)

# Tissue codes of the internal tissue map (tumour codes follow bratsx.labels.Tissue + 3).
_BACKGROUND, _CSF, _GM, _WM = 0, 1, 2, 3
_NCR, _ED, _ET = 3 + Tissue.NECROTIC_CORE, 3 + Tissue.EDEMA, 3 + Tissue.ENHANCING

#: Mean intensity per tissue code [bg, CSF, GM, WM, NCR, ED, ET] and modality, WM of T1 = 1.
_CONTRASTS: dict[Modality, tuple[float, ...]] = {
    Modality.FLAIR: (0.0, 0.25, 0.80, 0.65, 0.85, 1.35, 1.10),
    Modality.T1: (0.0, 0.30, 0.70, 1.00, 0.35, 0.55, 0.60),
    Modality.T1CE: (0.0, 0.30, 0.72, 1.00, 0.30, 0.55, 1.60),
    Modality.T2: (0.0, 1.50, 0.80, 0.55, 1.30, 1.25, 0.95),
}

# Folder layouts: case id pattern and file name suffix per modality / label.
_CASE_IDS = {
    Layout.BRATS2020: "BraTS20_Synthetic_{:03d}",
    Layout.BRATS2023: "BraTS-SYN-{:05d}-000",
    Layout.PLAIN: "case_{:03d}",
    Layout.MSD: "BRATS_{:03d}",
}
#: File names (without ``.nii.gz``) of each modality and the label (``None``) per folder layout.
FILE_NAMES = {
    Layout.BRATS2020: {Modality.FLAIR: "{id}_flair", Modality.T1: "{id}_t1", Modality.T1CE: "{id}_t1ce",
                       Modality.T2: "{id}_t2", None: "{id}_seg"},
    Layout.BRATS2023: {Modality.FLAIR: "{id}-t2f", Modality.T1: "{id}-t1n", Modality.T1CE: "{id}-t1c",
                       Modality.T2: "{id}-t2w", None: "{id}-seg"},
    Layout.PLAIN: {Modality.FLAIR: "flair", Modality.T1: "t1", Modality.T1CE: "t1ce", Modality.T2: "t2",
                   None: "seg"},
}
@dataclass(frozen=True)
class SyntheticCase:
    """One generated case.

    Attributes:
        image: int16 ``(4, x, y, z)`` as stored in the NIfTI files (L,P,S voxel axes), channels FLAIR,
            T1, T1ce, T2.
        labels: uint8 ``(x, y, z)`` in the BraTS 2023 convention (1 NCR, 2 edema, 3 ET).
        affine: the BraTS-like LPS affine.
    """

    image: np.ndarray
    labels: np.ndarray
    affine: np.ndarray


def brats_affine(shape: tuple[int, int, int]) -> np.ndarray:
    """The affine of BraTS volumes (1 mm, L,P,S voxel axes), generalised to ``shape``."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[1, 3] = shape[1] - 1
    return affine


class _Fields:
    """Smooth random fields over a grid with coordinates in [-1, 1] per axis."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int, int]) -> None:
        self.rng = rng
        self.axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]

    def smooth(self, terms: int = 4, max_frequency: float = 3.0, box: tuple[slice, ...] | None = None) -> np.ndarray:
        """A zero-mean field of unit-ish amplitude with spatial frequencies up to ``max_frequency``."""
        axes = self.axes if box is None else [a[s] for a, s in zip(self.axes, box)]
        field = np.zeros([len(a) for a in axes], dtype=np.float32)
        for _ in range(terms):
            frequency = self.rng.uniform(0.5, max_frequency, 3) * np.pi
            phase = self.rng.uniform(0.0, 2.0 * np.pi, 3)
            factors = [np.cos(f * a + p).astype(np.float32) for f, a, p in zip(frequency, axes, phase)]
            plane = np.float32(self.rng.normal()) * np.multiply.outer(factors[0], factors[1])
            field += plane[:, :, None] * factors[2][None, None, :]
        field *= np.float32(1.0 / np.sqrt(terms))
        return field

    def ellipsoid_radius(self, centre, semi_axes, box: tuple[slice, ...] | None = None) -> np.ndarray:
        """Normalised ellipsoidal distance from ``centre`` (1 on the surface), in grid units."""
        axes = self.axes if box is None else [a[s] for a, s in zip(self.axes, box)]
        terms = [((a - c) / s) ** 2 for a, c, s in zip(axes, centre, semi_axes)]
        return np.sqrt(terms[0][:, None, None] + terms[1][None, :, None] + terms[2][None, None, :])


def _tissue_map(rng: np.random.Generator, fields: _Fields) -> np.ndarray:
    """Brain tissues: WM core, GM ribbon, CSF at the surface and in two ventricles."""
    semi = np.array([0.62, 0.74, 0.80]) * rng.uniform(0.92, 1.05, 3)
    radius = fields.ellipsoid_radius(np.zeros(3), semi)
    radius += np.float32(0.05) * fields.smooth(6, 4.0)
    tissue = np.zeros(radius.shape, dtype=np.uint8)
    tissue[radius < 1.0] = _CSF
    tissue[radius < 0.96] = _GM
    wm_edge = np.float32(0.78) + np.float32(0.07) * fields.smooth(6, 5.0)
    tissue[radius < wm_edge] = _WM
    offset = rng.uniform(0.07, 0.11)
    for side in (-1.0, 1.0):
        centre = np.array([side * offset, rng.uniform(-0.1, 0.05), rng.uniform(0.0, 0.15)])
        ventricle = fields.ellipsoid_radius(centre, np.array([0.06, 0.28, 0.14]) * rng.uniform(0.8, 1.2, 3))
        tissue[ventricle < 1.0] = _CSF
    return tissue


def _add_tumour(rng: np.random.Generator, fields: _Fields, tissue: np.ndarray) -> None:
    """Paint a tumour (necrosis, enhancing rim, edema) into ``tissue``, inside the brain only."""
    brain = tissue != _BACKGROUND
    core_radius = rng.uniform(0.11, 0.24)
    edema_radius = core_radius * rng.uniform(1.5, 2.3)
    necrosis_fraction = rng.uniform(0.35, 0.7) if rng.random() < 0.85 else 0.0
    limit = 0.6 - edema_radius * 0.5
    centre = rng.uniform(-limit, limit, 3)
    stretch = rng.uniform(0.8, 1.25, 3)
    # Work inside the tumour's bounding box only: the fields there cost a fraction of the volume.
    box = []
    for axis, values in enumerate(fields.axes):
        reach = edema_radius * stretch[axis] * 1.6
        inside = np.flatnonzero(np.abs(values - centre[axis]) <= reach)
        box.append(slice(int(inside[0]), int(inside[-1]) + 1) if inside.size else slice(0, 0))
    box = tuple(box)
    if any(s.stop <= s.start for s in box):
        return
    core = fields.ellipsoid_radius(centre, core_radius * stretch, box)
    core += np.float32(0.18) * fields.smooth(4, 8.0, box)
    edema = fields.ellipsoid_radius(centre, edema_radius * stretch, box)
    edema += np.float32(0.30) * fields.smooth(5, 10.0, box)
    region = tissue[box]
    inside_brain = brain[box]
    region[(edema < 1.0) & inside_brain] = _ED
    region[(core < 1.0) & inside_brain] = _ET
    region[(core < necrosis_fraction) & inside_brain] = _NCR


def synthesize_case(shape: tuple[int, int, int], seed: int, index: int = 0) -> SyntheticCase:
    """Generate one BraTS-like case, identical for the same ``(shape, seed, index)``.

    Args:
        shape: volume shape; at least 16 voxels per axis.
        seed: dataset seed.
        index: case number within the dataset (each case draws from its own stream).
    """
    if min(shape) < 16:
        raise BratsxError(f"synthetic volumes need at least 16 voxels per axis, got {tuple(shape)}")
    rng = np.random.default_rng([seed, index])
    fields = _Fields(rng, tuple(shape))
    tissue = _tissue_map(rng, fields)
    _add_tumour(rng, fields, tissue)

    brain = tissue != _BACKGROUND
    texture = np.float32(1.0) + np.float32(0.03) * fields.smooth(6, 12.0)
    image = np.empty((len(MODALITY_ORDER), *shape), dtype=np.int16)
    for channel, modality in enumerate(MODALITY_ORDER):
        contrast = np.asarray(_CONTRASTS[modality], dtype=np.float32)
        values = np.take(contrast, tissue)
        values *= texture
        values *= np.exp(np.float32(0.12) * fields.smooth(3, 1.5))  # bias field
        values += rng.standard_normal(shape, dtype=np.float32) * np.float32(0.03)
        scale = np.float32(rng.uniform(300.0, 1500.0))
        values *= scale
        np.clip(values, 1.0, 32000.0, out=values)  # the brain stays non-zero in every modality
        values[~brain] = 0.0
        np.rint(values, out=values)
        image[channel] = values
    labels = np.where(tissue >= _NCR, tissue - 3, 0).astype(np.uint8)
    return SyntheticCase(image, labels, brats_affine(tuple(shape)))


def _nifti(volume: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    image = nib.Nifti1Image(volume, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    return image


def _case_targets(out: Path, layout: Layout, case_id: str) -> list[Path]:
    """The paths one synthetic case occupies (a folder, or MSD's image and label files)."""
    if layout is Layout.MSD:
        return [out / "imagesTr" / f"{case_id}.nii.gz", out / "labelsTr" / f"{case_id}.nii.gz"]
    return [out / case_id]


def _write_folder_case(out: Path, layout: Layout, case_id: str, case: SyntheticCase, labels: np.ndarray) -> None:
    """Write a case folder under a temporary name, then rename it: it appears whole or not at all."""
    names = FILE_NAMES[layout]
    with atomic_folder(out / case_id) as staging:
        for channel, modality in enumerate(MODALITY_ORDER):
            name = names[modality].format(id=case_id)
            save_nifti_atomic(_nifti(case.image[channel], case.affine), staging / f"{name}.nii.gz")
        save_nifti_atomic(_nifti(labels, case.affine), staging / f"{names[None].format(id=case_id)}.nii.gz")


def _write_msd_case(out: Path, case_id: str, case: SyntheticCase, labels: np.ndarray) -> None:
    (out / "imagesTr").mkdir(exist_ok=True)
    (out / "labelsTr").mkdir(exist_ok=True)
    four_d = np.ascontiguousarray(np.moveaxis(case.image, 0, -1))
    save_nifti_atomic(_nifti(four_d, case.affine), out / "imagesTr" / f"{case_id}.nii.gz")
    save_nifti_atomic(_nifti(labels, case.affine), out / "labelsTr" / f"{case_id}.nii.gz")


def _write_msd_dataset_json(out: Path, case_ids: list[str]) -> None:
    description = {
        "name": "BRATS (bratsx synthetic)",
        "description": "Synthetic BraTS-like cases generated by bratsx synth",
        "tensorImageSize": "4D",
        "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
        "numTraining": len(case_ids),
        "numTest": 0,
        "training": [
            {"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in case_ids
        ],
        "test": [],
    }
    write_bytes_atomic(out / "dataset.json", json.dumps(description, indent=2).encode())


def write_synthetic_dataset(
    out: Path | str,
    cases: int,
    shape: tuple[int, int, int] = BRATS_SHAPE,
    layout: Layout | str = Layout.BRATS2020,
    seed: int = 0,
    overwrite: bool = False,
    on_case: Callable[[str], None] | None = None,
) -> list[Path]:
    """Generate ``cases`` synthetic cases into ``out`` in the given file layout.

    Each case is written atomically (a case folder appears whole or not at all). Existing cases
    with the same ids are refused before anything is written, unless ``overwrite``.

    Args:
        out: output directory (created if needed).
        cases: number of cases.
        shape: volume shape per case.
        layout: ``brats2020``, ``brats2023``, ``msd`` or ``plain``; labels follow its convention
            (``plain`` uses BraTS 2023's 0/1/2/3).
        seed: dataset seed; case ``i`` is the same whatever ``cases`` is.
        overwrite: replace existing cases of the same ids.
        on_case: called with each case id once it is written (for progress display).

    Returns:
        The case folders (for MSD, the image files) written.

    Raises:
        BratsxError: on a bad argument or when cases exist and ``overwrite`` is off.
    """
    layout = Layout(layout)
    if cases < 1:
        raise BratsxError(f"--cases must be at least 1, got {cases}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BratsxError(f"{out}: exists and is not a directory")
    ids = [_CASE_IDS[layout].format(i) for i in range(1, cases + 1)]
    if not overwrite:
        existing = [p for case_id in ids for p in _case_targets(out, layout, case_id) if p.exists()]
        if existing:
            raise BratsxError(
                f"{out}: {len(existing)} case(s) already there (first: {existing[0].name}); "
                "pass --overwrite to replace them, or choose another folder"
            )
    out.mkdir(parents=True, exist_ok=True)
    # plain folders: BraTS 2023's 0/1/2/3, which no adult glioma set reads differently (0/1/2/4 is ET in
    # 2018-2021 but resection cavity in 2024: a plain folder with it needs --labels)
    convention = layout.convention or LabelConvention.BRATS2023
    written = []
    for index, case_id in enumerate(ids, start=1):
        case = synthesize_case(tuple(shape), seed, index)
        labels = convert_labels(case.labels, LabelConvention.BRATS2023, convention)
        if layout is Layout.MSD:
            _write_msd_case(out, case_id, case, labels)
        else:
            _write_folder_case(out, layout, case_id, case, labels)
        written.append(_case_targets(out, layout, case_id)[0])
        if on_case is not None:
            on_case(case_id)
    if layout is Layout.MSD:
        _write_msd_dataset_json(out, ids)
    return written
