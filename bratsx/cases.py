"""Finding BraTS cases on disk, whatever layout they come in.

A *case* is four co-registered MRI volumes (FLAIR, T1, T1ce, T2) and an optional label map; for a model
imported with other input channels (an ADC map), the volumes its contract names, found by those names.
:func:`discover` walks a directory and returns one :class:`Case` per case folder (or per MSD
image), detecting the layout of each folder on its own, so one directory may mix layouts, plus every
folder it passed over and why. Discovery looks at names and at what kind of entry each one is; the
problems it can see there (a missing or doubled modality, a dangling link, a folder it cannot list)
are recorded on the case rather than raised, so one bad folder never hides the others. Only what
would make two cases write one output (the same id twice) stops discovery.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .datasetjson import label_set_from_dataset_json
from .errors import BratsxError, CaseError, LabelError
from .labels import (
    BRATS_CHANNELS,
    DEFAULT_CANDIDATES,
    LabelConvention,
    Modality,
    candidate_sets,
    check_channel_name,
)

__all__ = ["Case", "Discovery", "Layout", "Skipped", "discover", "discover_cases", "match_file_name", "nifti_stem"]

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii.gz", ".nii")
MSD_IMAGE_FOLDERS = ("imagesTr", "imagesTs")
MSD_LABEL_FOLDER = "labelsTr"


class Layout(str, Enum):
    """The file layouts bratsx reads.

    * ``brats2020``: ``<id>/<id>_{flair,t1,t1ce,t2}.nii[.gz]`` and ``<id>_seg`` (BraTS 2018-2021)
    * ``brats2023``: ``<id>/<id>-{t2f,t1n,t1c,t2w}.nii.gz`` and ``<id>-seg`` (BraTS 2023+)
    * ``msd``: ``imagesTr|imagesTs/BRATS_###.nii.gz`` 4D, ``labelsTr/BRATS_###.nii.gz`` (MSD Task01)
    * ``plain``: ``<case>/{flair,t1,t1ce|t1c,t2}.nii[.gz]`` and an optional ``seg``

    A channel that is no BraTS modality is found by its name in each folder layout: ``<id>_adc``,
    ``<id>-adc``, ``adc`` (MSD's 4D images hold the four modalities only).
    """

    BRATS2020 = "brats2020"
    BRATS2023 = "brats2023"
    MSD = "msd"
    PLAIN = "plain"

    @property
    def convention(self) -> LabelConvention | None:
        """The label set this layout's files are written in by default; ``None`` for ``plain``."""
        return _LAYOUT_CONVENTION[self]

    def candidates(self, case_id: str) -> tuple[LabelConvention, ...]:
        """The label sets a case of this layout could belong to.

        BraTS 2018-2021 and MSD layouts state theirs; the BraTS 2023 layout serves every challenge
        since 2023 (glioma, post-treatment glioma, meningioma, metastases, pediatric), told apart by
        the id's prefix; plain folders go by the id too.
        """
        if self in (Layout.BRATS2020, Layout.MSD):
            return (_LAYOUT_CONVENTION[self],)
        named = candidate_sets(case_id)
        if self is Layout.BRATS2023 and named == DEFAULT_CANDIDATES:
            return tuple(c for c in named if c is not LabelConvention.BRATS2020)
        return named


_LAYOUT_CONVENTION: dict[Layout, LabelConvention | None] = {
    Layout.BRATS2020: LabelConvention.BRATS2020,
    Layout.BRATS2023: LabelConvention.BRATS2023,
    Layout.MSD: LabelConvention.MSD,
    Layout.PLAIN: None,
}


@dataclass(frozen=True)
class _FolderPattern:
    """How the files of one case folder are named: stem suffixes (prefixed layouts) or whole stems; a channel
    that is no BraTS modality is named by ``other`` (``"_{}"``: ``<id>_adc``)."""

    modalities: Mapping[Modality, tuple[str, ...]]
    label: tuple[str, ...]
    prefixed: bool  # True: the names end with the suffix after the case id; False: the whole stem
    other: str

    def names(self, channel: str | None) -> tuple[str, ...]:
        """The stem suffixes (or stems) of a channel's file; ``None``: of the label's."""
        if channel is None:
            return self.label
        return self.modalities.get(channel) or (self.other.format(channel),)

    def matches(self, stem: str, names: tuple[str, ...]) -> bool:
        stem = stem.lower()
        if self.prefixed:
            return any(stem.endswith(n) and len(stem) > len(n) for n in names)
        return stem in names

    def describe(self, channel: str | None) -> str:
        return " or ".join(f"*{n}.nii.gz" if self.prefixed else f"{n}.nii.gz" for n in self.names(channel))


_FOLDER_PATTERNS: dict[Layout, _FolderPattern] = {
    Layout.BRATS2020: _FolderPattern(
        {Modality.FLAIR: ("_flair",), Modality.T1: ("_t1",), Modality.T1CE: ("_t1ce",), Modality.T2: ("_t2",)},
        label=("_seg",),
        prefixed=True,
        other="_{}",
    ),
    Layout.BRATS2023: _FolderPattern(
        {Modality.FLAIR: ("-t2f",), Modality.T1: ("-t1n",), Modality.T1CE: ("-t1c",), Modality.T2: ("-t2w",)},
        label=("-seg",),
        prefixed=True,
        other="-{}",
    ),
    Layout.PLAIN: _FolderPattern(
        {Modality.FLAIR: ("flair",), Modality.T1: ("t1",), Modality.T1CE: ("t1ce", "t1c"), Modality.T2: ("t2",)},
        label=("seg",),
        prefixed=False,
        other="{}",
    ),
}


@dataclass(frozen=True)
class Case:
    """One case as found on disk.

    Attributes:
        case_id: folder name, or the file stem for MSD (``BRATS_001``).
        layout: the layout its files follow (for a folder that cannot be listed: the forced layout,
            else ``plain``).
        folder: the case folder (for MSD, the dataset folder holding ``imagesTr``).
        images: path of each input channel, by its name (:data:`~bratsx.labels.BRATS_CHANNELS`, or the names
            the model asked :func:`discover` for), in that order; for MSD all four point to the same 4D file.
        label: path of the reference segmentation, if there is one.
        problems: what discovery found wrong (missing or doubled files, entries that are no readable
            file, a folder it cannot list); problems of the reference alone are
            :class:`~bratsx.errors.LabelError`, so the case can still be segmented.
        stated_labels: the label set a dataset file states for it (MSD/nnU-Net ``dataset.json``).
    """

    case_id: str
    layout: Layout
    folder: Path
    images: Mapping[str, Path]
    label: Path | None = None
    problems: tuple[CaseError, ...] = field(default=())
    stated_labels: LabelConvention | None = None

    @property
    def label_sets(self) -> tuple[LabelConvention, ...]:
        """The label sets its maps could be in: the stated one, else the layout's candidates for its id."""
        return (self.stated_labels,) if self.stated_labels else self.layout.candidates(self.case_id)

    @property
    def convention(self) -> LabelConvention | None:
        """The label set its outputs are written in when none is given: the one candidate, or the first
        of candidates that write a network's tissues alike (2023 and 2024 glioma); ``None`` when
        nothing narrows them (plain folders) or they write differently (pediatric 2023 and 2024)."""
        sets = self.label_sets
        if sets == DEFAULT_CANDIDATES or len({c.label_set.model_values for c in sets}) > 1:
            return None
        return sets[0]

    def output_convention(self, model: LabelConvention | None = None) -> LabelConvention:
        """The label set an output is written in when neither ``--labels`` nor a reference says.

        :attr:`convention`; else the model's (its contract's) set when the case could be in it; for a
        case nothing narrows, BraTS 2023's 0/1/2/3 unless the model states a set other than adult
        glioma: every adult glioma set reads 0/1/2/3 alike, where 2018-2021's ET 4 would read back as
        2024's resection cavity.

        Raises:
            CaseError: the id names sets that write a network's tissues differently (pediatric 2023 and
                2024) and the model's set is none of them: one line naming them and ``--labels``.
        """
        sets = self.label_sets
        if self.convention is not None:
            return self.convention
        if sets == DEFAULT_CANDIDATES:
            return model if model is not None and model not in sets else LabelConvention.BRATS2023
        if model in sets:
            return model
        raise CaseError(self.case_id, f"its id fits label sets that write tumour labels differently "
                        f"({', '.join(c.value for c in sets)}); choose one with --labels", self.folder)

    @property
    def files(self) -> tuple[Path, ...]:
        """Every distinct input file of the case, label included."""
        paths = dict.fromkeys(self.images.values())
        if self.label is not None:
            paths[self.label] = None
        return tuple(paths)


@dataclass(frozen=True)
class Skipped:
    """A folder that discovery passed over: where, and why (e.g. ``hidden folder``)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Discovery:
    """What :func:`discover` found: the cases, in natural order of their ids, and what it skipped."""

    cases: tuple[Case, ...]
    skipped: tuple[Skipped, ...] = ()


def nifti_stem(path: Path) -> str | None:
    """The file name without ``.nii``/``.nii.gz``, or ``None`` when it is not a NIfTI file."""
    name = path.name
    if name.startswith("."):  # editor backups and macOS '._' resource forks
        return None
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def match_file_name(name: str) -> tuple[Layout, Modality | None] | None:
    """The folder layout and modality a file name follows, as discovery reads it (for a web upload's names).

    Returns:
        ``(layout, modality)``, the modality ``None`` for the label file; ``None`` when the name is no
        NIfTI file or follows no folder layout.
    """
    stem = nifti_stem(Path(name))
    for layout, pattern in _FOLDER_PATTERNS.items():
        for modality, names in (*pattern.modalities.items(), (None, pattern.label)):
            if stem is not None and pattern.matches(stem, names):
                return layout, modality
    return None


def _nifti_entries(folder: Path) -> list[Path]:
    """Entries named like NIfTI files, whatever they are (file, link, folder), sorted.

    Raises:
        OSError: the folder cannot be listed.
    """
    return sorted(p for p in folder.iterdir() if nifti_stem(p) is not None)


def _not_a_file(path: Path) -> str | None:
    """Why an entry named like a NIfTI file cannot be read as one, or ``None`` for a regular file."""
    try:
        mode = path.stat().st_mode  # follows links
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if error.errno == errno.ENOENT and path.is_symlink():
            return f"is a dangling symbolic link (its target {os.readlink(path)} does not exist)"
        return f"cannot be read ({error.strerror or error})"
    if stat.S_ISDIR(mode):
        return "is a directory, not a NIfTI file"
    if not stat.S_ISREG(mode):
        return "is not a regular file (a pipe, socket or device)"
    return None


def _is_msd_dataset(folder: Path) -> bool:
    return any((folder / name).is_dir() for name in MSD_IMAGE_FOLDERS)


def _natural_key(text: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _detect_folder_layout(files: list[Path], channels: tuple[str, ...]) -> Layout | None:
    """The folder layout whose names for ``channels`` match the most files (``None`` if none match)."""
    best, best_hits = None, 0
    for layout, pattern in _FOLDER_PATTERNS.items():
        hits = sum(
            1
            for path in files
            for channel in channels
            if pattern.matches(nifti_stem(path) or "", pattern.names(channel))
        )
        if hits > best_hits:
            best, best_hits = layout, hits
    return best


def _folder_case_id(folder: Path) -> str:
    """The id of a case folder: its name, or for ``.`` and ``..`` the name of the folder they resolve to.

    Raises:
        BratsxError: the name is empty (the file system root) or starts with ``.`` (outputs named after
            it would be hidden files).
    """
    case_id = folder.name if folder.name not in ("", ".", "..") else folder.resolve().name
    if not case_id or case_id.startswith("."):
        raise BratsxError(f"{folder}: a case id is its folder's name, and {case_id or 'an empty name'!r} cannot "
                          "name outputs (they would be hidden or nameless); rename the folder, or move the case "
                          "files into a folder named after the case")
    return case_id


def _case_from_folder(folder: Path, files: list[Path], layout: Layout, case_id: str,
                      channels: tuple[str, ...]) -> Case:
    """Assign each entry of a case folder to its channel, recording what is missing, doubled or unreadable."""
    pattern = _FOLDER_PATTERNS[layout]
    problems: list[CaseError] = []

    def pick(channel: str | None, what: str) -> Path | None:
        error = CaseError if channel is not None else LabelError
        found = [p for p in files if pattern.matches(nifti_stem(p) or "", pattern.names(channel))]
        if len(found) > 1:
            listed = ", ".join(p.name for p in found)
            problems.append(error(case_id, f"two files for {what} ({listed}); keep one", folder))
        elif not found and channel is not None:
            problems.append(error(case_id, f"missing {what} image (expected {pattern.describe(channel)})", folder))
        elif found and (reason := _not_a_file(found[0])):
            problems.append(error(case_id, f"{what} file {reason}", found[0]))
        return found[0] if found else None

    images = {}
    for channel in channels:
        path = pick(channel, channel.upper())
        if path is not None:
            images[channel] = path
    label = pick(None, "the label")
    return Case(case_id, layout, folder, images, label, tuple(problems))


def _msd_cases(dataset: Path, channels: tuple[str, ...]) -> list[Case]:
    """One case per 4D image in ``imagesTr``/``imagesTs``, labels from ``labelsTr``, in the label set
    the dataset's ``dataset.json`` states (MSD's own when it has none; a damaged one is a problem of
    each case's reference). The 4D images hold the four BraTS modalities: another channel is a problem."""
    label_folder = dataset / MSD_LABEL_FOLDER
    stated, dataset_problem = None, None
    try:
        stated = label_set_from_dataset_json(dataset)
    except BratsxError as error:
        dataset_problem = str(error)
    labels: dict[str, list[Path]] = {}
    for path in _nifti_entries(label_folder) if label_folder.is_dir() else []:
        labels.setdefault(nifti_stem(path) or "", []).append(path)
    cases: list[Case] = []
    for image_folder_name in MSD_IMAGE_FOLDERS:
        image_folder = dataset / image_folder_name
        if not image_folder.is_dir():
            continue
        by_stem: dict[str, list[Path]] = {}
        for path in _nifti_entries(image_folder):
            by_stem.setdefault(nifti_stem(path) or "", []).append(path)
        for stem, paths in by_stem.items():
            problems: list[CaseError] = []
            if len(paths) > 1:
                listed = ", ".join(p.name for p in paths)
                problems.append(CaseError(stem, f"two image files ({listed}); keep one", image_folder))
            elif reason := _not_a_file(paths[0]):
                problems.append(CaseError(stem, f"the image file {reason}", paths[0]))
            found = labels.get(stem, []) if image_folder_name == "imagesTr" else []
            if len(found) > 1:
                listed = ", ".join(p.name for p in found)
                problems.append(LabelError(stem, f"two label files ({listed}); keep one", label_folder))
            elif found and (reason := _not_a_file(found[0])):
                problems.append(LabelError(stem, f"the label file {reason}", found[0]))
            if found and dataset_problem:
                problems.append(LabelError(stem, dataset_problem, dataset))
            problems.extend(CaseError(stem, f"the model takes {channel.upper()}, and an MSD 4D image holds FLAIR, T1, "
                                      f"T1ce and T2 only; give the case as a folder with its {channel} file", paths[0])
                            for channel in channels if channel not in BRATS_CHANNELS)
            images = {channel: paths[0] for channel in channels if channel in BRATS_CHANNELS}
            cases.append(Case(stem, Layout.MSD, dataset, images, found[0] if found else None, tuple(problems),
                              stated))
    return cases


def _cases_in_folder(folder: Path, layout: Layout | None, channels: tuple[str, ...],
                     case_id: str | None = None) -> list[Case] | str:
    """The cases a folder holds (an MSD dataset, or one case folder), or why it holds none.

    Raises:
        OSError: the folder (or a folder inside it) cannot be listed.
        BratsxError: a case folder's name cannot be its id (see :func:`_folder_case_id`).
    """
    if _is_msd_dataset(folder) and layout in (None, Layout.MSD):
        return _msd_cases(folder, channels) or "MSD dataset without images"
    if layout is Layout.MSD:
        return "not an MSD dataset (no imagesTr or imagesTs folder)"
    files = _nifti_entries(folder)
    if not files:
        return "no NIfTI file"
    chosen = layout or _detect_folder_layout(files, channels)
    if chosen is None:
        return f"no file named like a {_spoken(channels, 'or')} image ({len(files)} NIfTI file(s))"
    return [_case_from_folder(folder, files, chosen, case_id or _folder_case_id(folder), channels)]


def _spoken(channels: tuple[str, ...], conjunction: str) -> str:
    """``FLAIR, T1, T1ce or T2``: channel names as a sentence says them."""
    names = [_SPOKEN.get(c, c.upper()) for c in channels]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {conjunction} {names[-1]}"


_SPOKEN = {"flair": "FLAIR", "t1": "T1", "t1ce": "T1ce", "t2": "T2"}


def _unlistable_case(folder: Path, layout: Layout | None, error: OSError) -> Case:
    """A case folder that cannot be listed: it fails alone, with its reason."""
    problem = CaseError(folder.name, f"cannot list the folder ({error.strerror or error}); check its permissions",
                        folder)
    return Case(folder.name, layout or Layout.PLAIN, folder, {}, None, (problem,))


def _subfolder_cases(root: Path, layout: Layout | None, channels: tuple[str, ...]) -> tuple[list[Case], list[Skipped]]:
    """The cases of every visible subfolder of ``root``, and the entries passed over with why."""
    cases: list[Case] = []
    skipped: list[Skipped] = []
    for entry in sorted(root.iterdir()):
        if entry.is_symlink() and not entry.exists():
            skipped.append(Skipped(entry, _not_a_file(entry) or "dangling symbolic link"))
        elif not entry.is_dir():
            continue
        elif entry.name.startswith("."):
            skipped.append(Skipped(entry, "hidden folder (its name starts with '.')"))
        else:
            try:
                found = _cases_in_folder(entry, layout, channels, entry.name)
            except OSError as error:
                found = [_unlistable_case(entry, layout, error)]
            if isinstance(found, str):
                skipped.append(Skipped(entry, found))
            else:
                cases.extend(found)
    return cases, skipped


def _source(case: Case) -> Path:
    """Where a case comes from, to tell two cases apart: its folder, or its MSD image file."""
    return next(iter(case.images.values())) if case.layout is Layout.MSD and case.images else case.folder


def _refuse_duplicate_ids(cases: list[Case]) -> None:
    """Outputs are named after case ids: two cases with one id (or ids equal but for letter case,
    which share a file on case-insensitive file systems) would overwrite each other's outputs.

    Raises:
        BratsxError: naming the first two sources of a repeated id.
    """
    first: dict[str, Case] = {}
    clashes = []
    for case in cases:
        key = unicodedata.normalize("NFC", case.case_id).casefold()
        if key in first:
            clashes.append((first[key], case))
        else:
            first[key] = case
    if not clashes:
        return
    a, b = clashes[0]
    more = f" ({len(clashes) - 1} more repeated id(s))" if len(clashes) > 1 else ""
    if a.case_id == b.case_id:
        what = f"case id {a.case_id} found twice: in {_source(a)} and in {_source(b)}"
    else:
        what = (f"case ids {a.case_id} ({_source(a)}) and {b.case_id} ({_source(b)}) differ only in letter case, "
                "which names one file on case-insensitive file systems")
    raise BratsxError(f"{what}{more}; outputs are named after case ids, so rename or move one")


def discover(root: Path | str, layout: Layout | str | None = None,
             channels: tuple[str, ...] = BRATS_CHANNELS) -> Discovery:
    """Find every case under ``root``, and every folder passed over with the reason.

    ``root`` may be a directory of case folders (layouts may differ between folders), a single
    case folder, an MSD dataset folder (holding ``imagesTr``/``imagesTs``), or a directory of MSD
    datasets. Hidden folders (``.name``), folders without NIfTI files and folders whose files match
    no layout are skipped, each with its reason. A folder that cannot be listed becomes a case with
    that problem, so it fails alone. A case folder given as ``.`` or ``..`` is named after the folder
    it resolves to.

    Args:
        root: where to look.
        layout: force one layout for every folder instead of detecting it per folder.
        channels: the input channels to find, by name (a model's ``modality_order``): the four BraTS
            modalities by default; a case without one of them has that problem.

    Returns:
        The cases in natural order of their ids (a case with missing, doubled or unreadable files
        too, with its :attr:`Case.problems` filled in) and what was skipped.

    Raises:
        BratsxError: ``root`` is not a directory, cannot be listed or holds no case; two cases share
            an id (or ids differing only in letter case); a case folder's name cannot be an id.
    """
    root = Path(root)
    if not root.is_dir():
        raise BratsxError(f"{root}: not a directory")
    forced = Layout(layout) if layout is not None else None
    channels = tuple(map(check_channel_name, channels))
    try:
        found = _cases_in_folder(root, forced, channels)
        cases, skipped = (found, []) if isinstance(found, list) else _subfolder_cases(root, forced, channels)
    except OSError as error:
        raise BratsxError(f"{root}: cannot list the folder ({error.strerror or error}); check its permissions") \
            from error
    if not cases:
        hint = f" in the {forced.value} layout" if forced else ""
        passed = "".join(f"; skipped {s.path.name}: {s.reason}" for s in skipped[:3])
        raise BratsxError(
            f"{root}: no BraTS case found{hint} (expected case folders with {_spoken(channels, 'and')} "
            f"NIfTI files, or an MSD dataset with imagesTr/){passed}"
        )
    _refuse_duplicate_ids(cases)
    return Discovery(tuple(sorted(cases, key=lambda c: _natural_key(c.case_id))), tuple(skipped))


def discover_cases(root: Path | str, layout: Layout | str | None = None,
                   channels: tuple[str, ...] = BRATS_CHANNELS) -> list[Case]:
    """The cases of :func:`discover`, for callers that need no account of what was skipped (logged).

    Args:
        root: where to look.
        layout: force one layout for every folder instead of detecting it per folder.
        channels: as :func:`discover`.

    Returns:
        The cases in natural order of their ids.

    Raises:
        BratsxError: as :func:`discover`.
    """
    found = discover(root, layout, channels)
    for skipped in found.skipped:
        logger.info("skipped %s: %s", skipped.path, skipped.reason)
    return list(found.cases)
