"""Finding BraTS cases on disk, whatever layout they come in.

A *case* is four co-registered MRI volumes (FLAIR, T1, T1ce, T2) and an optional label map.
:func:`discover_cases` walks a directory and returns one :class:`Case` per case folder (or per MSD
image), detecting the layout of each folder on its own, so one directory may mix layouts.
Discovery only looks at file names; problems it can see there (a missing or doubled modality) are
recorded on the case rather than raised, so one bad folder never hides the others.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .errors import BratsxError, CaseError
from .labels import MODALITY_ORDER, LabelConvention, Modality

__all__ = ["Case", "Layout", "discover_cases", "nifti_stem"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
MSD_IMAGE_FOLDERS = ("imagesTr", "imagesTs")
MSD_LABEL_FOLDER = "labelsTr"


class Layout(str, Enum):
    """The file layouts bratsx reads.

    * ``brats2020``: ``<id>/<id>_{flair,t1,t1ce,t2}.nii[.gz]`` and ``<id>_seg`` (BraTS 2018-2021)
    * ``brats2023``: ``<id>/<id>-{t2f,t1n,t1c,t2w}.nii.gz`` and ``<id>-seg`` (BraTS 2023+)
    * ``msd``: ``imagesTr|imagesTs/BRATS_###.nii.gz`` 4D, ``labelsTr/BRATS_###.nii.gz`` (MSD Task01)
    * ``plain``: ``<case>/{flair,t1,t1ce|t1c,t2}.nii[.gz]`` and an optional ``seg``
    """

    BRATS2020 = "brats2020"
    BRATS2023 = "brats2023"
    MSD = "msd"
    PLAIN = "plain"

    @property
    def convention(self) -> LabelConvention | None:
        """The label convention of this layout; ``None`` for ``plain``, read from the values."""
        return _LAYOUT_CONVENTION[self]


_LAYOUT_CONVENTION: dict[Layout, LabelConvention | None] = {
    Layout.BRATS2020: LabelConvention.BRATS2020,
    Layout.BRATS2023: LabelConvention.BRATS2023,
    Layout.MSD: LabelConvention.MSD,
    Layout.PLAIN: None,
}


@dataclass(frozen=True)
class _FolderPattern:
    """How the files of one case folder are named: stem suffixes (prefixed layouts) or whole stems."""

    modalities: Mapping[Modality, tuple[str, ...]]
    label: tuple[str, ...]
    prefixed: bool  # True: the names end with the suffix after the case id; False: the whole stem

    def matches(self, stem: str, names: tuple[str, ...]) -> bool:
        stem = stem.lower()
        if self.prefixed:
            return any(stem.endswith(n) and len(stem) > len(n) for n in names)
        return stem in names

    def describe(self, modality: Modality | None) -> str:
        names = self.label if modality is None else self.modalities[modality]
        return " or ".join(f"*{n}.nii.gz" if self.prefixed else f"{n}.nii.gz" for n in names)


_FOLDER_PATTERNS: dict[Layout, _FolderPattern] = {
    Layout.BRATS2020: _FolderPattern(
        {Modality.FLAIR: ("_flair",), Modality.T1: ("_t1",), Modality.T1CE: ("_t1ce",), Modality.T2: ("_t2",)},
        label=("_seg",),
        prefixed=True,
    ),
    Layout.BRATS2023: _FolderPattern(
        {Modality.FLAIR: ("-t2f",), Modality.T1: ("-t1n",), Modality.T1CE: ("-t1c",), Modality.T2: ("-t2w",)},
        label=("-seg",),
        prefixed=True,
    ),
    Layout.PLAIN: _FolderPattern(
        {Modality.FLAIR: ("flair",), Modality.T1: ("t1",), Modality.T1CE: ("t1ce", "t1c"), Modality.T2: ("t2",)},
        label=("seg",),
        prefixed=False,
    ),
}


@dataclass(frozen=True)
class Case:
    """One case as found on disk.

    Attributes:
        case_id: folder name, or the file stem for MSD (``BRATS_001``).
        layout: the layout its files follow.
        folder: the case folder (for MSD, the dataset folder holding ``imagesTr``).
        images: path of each modality; for MSD all four point to the same 4D file.
        label: path of the reference segmentation, if there is one.
        problems: what discovery found wrong from the file names alone (missing or doubled files).
    """

    case_id: str
    layout: Layout
    folder: Path
    images: Mapping[Modality, Path]
    label: Path | None = None
    problems: tuple[CaseError, ...] = field(default=())

    @property
    def convention(self) -> LabelConvention | None:
        """Label convention of the layout (``None`` for plain folders: read from the values)."""
        return self.layout.convention

    @property
    def files(self) -> tuple[Path, ...]:
        """Every distinct input file of the case, label included."""
        paths = dict.fromkeys(self.images[m] for m in MODALITY_ORDER if m in self.images)
        if self.label is not None:
            paths[self.label] = None
        return tuple(paths)


def nifti_stem(path: Path) -> str | None:
    """The file name without ``.nii``/``.nii.gz``, or ``None`` when it is not a NIfTI file."""
    name = path.name
    if name.startswith("."):  # editor backups and macOS '._' resource forks
        return None
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and nifti_stem(p) is not None)


def _is_msd_dataset(folder: Path) -> bool:
    return any((folder / name).is_dir() for name in MSD_IMAGE_FOLDERS)


def _natural_key(text: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _detect_folder_layout(files: list[Path]) -> Layout | None:
    """The folder layout whose modality names match the most files (``None`` if none match)."""
    best, best_hits = None, 0
    for layout, pattern in _FOLDER_PATTERNS.items():
        hits = sum(
            1
            for path in files
            for names in pattern.modalities.values()
            if pattern.matches(nifti_stem(path) or "", names)
        )
        if hits > best_hits:
            best, best_hits = layout, hits
    return best


def _case_from_folder(folder: Path, files: list[Path], layout: Layout) -> Case:
    """Assign each file of a case folder to its modality, recording what is missing or doubled."""
    case_id = folder.name
    pattern = _FOLDER_PATTERNS[layout]
    problems: list[CaseError] = []

    def pick(names: tuple[str, ...], what: str, modality: Modality | None) -> Path | None:
        found = [p for p in files if pattern.matches(nifti_stem(p) or "", names)]
        if len(found) > 1:
            listed = ", ".join(p.name for p in found)
            problems.append(CaseError(case_id, f"two files for {what} ({listed}); keep one", folder))
        elif not found and modality is not None:
            problems.append(
                CaseError(case_id, f"missing {what} image (expected {pattern.describe(modality)})", folder)
            )
        return found[0] if found else None

    images = {}
    for modality in MODALITY_ORDER:
        path = pick(pattern.modalities[modality], modality.value.upper(), modality)
        if path is not None:
            images[modality] = path
    label = pick(pattern.label, "the label", None)
    return Case(case_id, layout, folder, images, label, tuple(problems))


def _msd_cases(dataset: Path) -> list[Case]:
    """One case per 4D image in ``imagesTr``/``imagesTs``, labels from ``labelsTr``."""
    cases: list[Case] = []
    label_folder = dataset / MSD_LABEL_FOLDER
    for image_folder_name in MSD_IMAGE_FOLDERS:
        image_folder = dataset / image_folder_name
        if not image_folder.is_dir():
            continue
        by_stem: dict[str, list[Path]] = {}
        for path in _nifti_files(image_folder):
            by_stem.setdefault(nifti_stem(path) or "", []).append(path)
        for stem, paths in by_stem.items():
            problems = []
            if len(paths) > 1:
                listed = ", ".join(p.name for p in paths)
                problems.append(CaseError(stem, f"two image files ({listed}); keep one", image_folder))
            label = None
            if image_folder_name == "imagesTr" and label_folder.is_dir():
                candidates = [label_folder / f"{stem}{suffix}" for suffix in NIFTI_SUFFIXES]
                label = next((c for c in candidates if c.is_file()), None)
            images = dict.fromkeys(MODALITY_ORDER, paths[0])
            cases.append(Case(stem, Layout.MSD, dataset, images, label, tuple(problems)))
    return cases


def _cases_in_folder(folder: Path, layout: Layout | None) -> list[Case]:
    """The cases a folder holds: an MSD dataset, or one case folder, or nothing."""
    if _is_msd_dataset(folder) and layout in (None, Layout.MSD):
        return _msd_cases(folder)
    if layout is Layout.MSD:
        return []
    files = _nifti_files(folder)
    if not files:
        return []
    chosen = layout or _detect_folder_layout(files)
    if chosen is None:
        return []
    return [_case_from_folder(folder, files, chosen)]


def discover_cases(root: Path | str, layout: Layout | str | None = None) -> list[Case]:
    """Find every case under ``root``.

    ``root`` may be a directory of case folders (layouts may differ between folders), a single
    case folder, an MSD dataset folder (holding ``imagesTr``/``imagesTs``), or a directory of MSD
    datasets. Folders without NIfTI files are ignored.

    Args:
        root: where to look.
        layout: force one layout for every folder instead of detecting it per folder.

    Returns:
        The cases in natural order of their ids. A case whose files are missing or doubled is
        returned too, with its :attr:`Case.problems` filled in.

    Raises:
        BratsxError: if ``root`` is not a directory or holds no case at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise BratsxError(f"{root}: not a directory")
    forced = Layout(layout) if layout is not None else None
    cases = _cases_in_folder(root, forced)
    if not cases:
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            cases.extend(_cases_in_folder(folder, forced))
    if not cases:
        hint = f" in the {forced.value} layout" if forced else ""
        raise BratsxError(
            f"{root}: no BraTS case found{hint} (expected case folders with FLAIR, T1, T1ce and T2 "
            "NIfTI files, or an MSD dataset with imagesTr/)"
        )
    return sorted(cases, key=lambda c: _natural_key(c.case_id))
