"""From an upload to a case folder the loader reads: four NIfTI files, or one ``.zip`` of a case folder.

Nothing the browser sends names a place on disk. The four files are written under names of the
server's making (``flair.nii.gz``, ...: the ``plain`` layout) in a case folder named after the
files' common prefix, reduced to ``[A-Za-z0-9._-]``; their own names only suggest each file's
sequence (as discovery reads names), which the user may correct. A ``.zip`` is extracted member by
member after checks: no absolute path, no ``..``, no link, no encrypted member, at most
``max_members`` entries and ``max_bytes`` bytes once expanded (counted while extracting, not taken
from the archive's own claims), every path component reduced to the same safe characters. Only
NIfTI files are extracted; the case is then found by :func:`bratsx.cases.discover` in any layout
(:func:`case_from_zip`): folders that only hold one folder (a zip of the folder above the case) are
entered, and files at the archive's root are moved into a case folder named after them (their common
prefix, else the archive's name), so that the case never takes the server's own folder name.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import stat
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ..cases import NIFTI_SUFFIXES, Case, Layout, discover, match_file_name
from ..errors import BratsxError, LabelError
from ..imageio import inspect_case
from ..labels import MODALITY_ORDER, LabelConvention

__all__ = ["LABEL_ROLE", "ROLES", "UploadedFile", "case_from_folder", "case_from_zip", "case_id_from_names",
           "extract_zip", "guess_role", "raw_case_from_zip", "stage_files"]

#: What an uploaded file can be: one of the four sequences, or the reference segmentation.
LABEL_ROLE = "seg"
ROLES = (*(m.value for m in MODALITY_ORDER), LABEL_ROLE)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_ID = 64
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class UploadedFile:
    """One uploaded file: the name the browser gave (shown, never used as a path), its role, its content."""

    name: str
    role: str
    content: BinaryIO


def guess_role(name: str) -> dict[str, str | None]:
    """The role a file name suggests, as discovery reads names, and the layout it follows.

    Returns:
        ``{"role": "flair" | "t1" | "t1ce" | "t2" | "seg" | None, "layout": layout name or None}``.
    """
    match = match_file_name(PurePosixPath(name.replace("\\", "/")).name)
    if match is None:
        return {"role": None, "layout": None}
    layout, modality = match
    return {"role": LABEL_ROLE if modality is None else modality.value, "layout": layout.value}


def _nifti_suffix(name: str) -> str | None:
    return next((s for s in NIFTI_SUFFIXES if name.lower().endswith(s)), None)


def _safe_component(text: str) -> str:
    """``text`` reduced to ``[A-Za-z0-9._-]`` with no leading dot (empty when nothing is left)."""
    return _UNSAFE.sub("_", text).lstrip(".")


def case_id_from_names(names: Sequence[str]) -> str:
    """A case id for uploaded files: their common prefix up to its last separator (``BraTS-GLI-00001-000`` of
    ``BraTS-GLI-00001-000-t1c.nii.gz``, ``...-t2f.nii.gz``, ...), reduced to safe characters, else ``case``."""
    stems = [PurePosixPath(n.replace("\\", "/")).name for n in names]
    prefix = os.path.commonprefix(stems) if len(stems) > 1 else ""
    cut = max(prefix.rfind(separator) for separator in "_-.")
    return _case_id(prefix[:cut] if cut > 0 else prefix)


def _case_id(text: str) -> str:
    """``text`` as a case id: safe characters, no leading or trailing separator, at most 64 characters, else
    ``case``."""
    return _safe_component(text).strip("_-.")[:_MAX_ID] or "case"


def _convention_of(names: Sequence[str]) -> LabelConvention | None:
    """The label convention of the layout all the names follow (``None``: no single layout, or plain)."""
    layouts = {guess_role(n)["layout"] for n in names}
    return Layout(layouts.pop()).convention if len(layouts) == 1 and None not in layouts else None


def stage_files(files: Sequence[UploadedFile], folder: Path, max_bytes: int | None = None
                ) -> tuple[Case, LabelConvention | None]:
    """Write four sequences (and optionally a reference) into ``folder/<case id>/`` under plain-layout names.

    Args:
        files: the uploaded files with their roles.
        folder: an empty folder of the job's.
        max_bytes: as :func:`case_from_folder`.

    Returns:
        The case as discovery finds it, and the label convention the original names imply (BraTS 2023 names
        give 0/1/2/3 labels, as ``bratsx infer`` would on the original folder).

    Raises:
        BratsxError: a file that is no NIfTI file, an unknown role, a sequence missing or given twice, or a
            problem the loader finds in the files' headers (one line naming the case and the file).
    """
    by_role: dict[str, UploadedFile] = {}
    for upload in files:
        if _nifti_suffix(upload.name) is None:
            raise BratsxError(f"{upload.name}: not a NIfTI file (.nii or .nii.gz); upload the four sequences, or one "
                              ".zip of the case folder")
        if not upload.role:
            raise BratsxError(f"{upload.name}: no sequence chosen (its name says none); choose one of "
                              f"{', '.join(ROLES)}")
        if upload.role not in ROLES:
            raise BratsxError(f"{upload.name}: unknown sequence {upload.role!r}; choose one of {', '.join(ROLES)}")
        if upload.role in by_role:
            raise BratsxError(f"{by_role[upload.role].name} and {upload.name} are both {upload.role}; choose another "
                              "sequence for one of them")
        by_role[upload.role] = upload
    missing = [m.value for m in MODALITY_ORDER if m.value not in by_role]
    if missing:
        raise BratsxError(f"missing {', '.join(missing)}: upload FLAIR, T1, T1ce and T2 (or one .zip of the case "
                          "folder)")
    case_dir = folder / case_id_from_names([f.name for f in files])
    case_dir.mkdir(parents=True)
    for role, upload in by_role.items():
        with (case_dir / f"{role}{_nifti_suffix(upload.name)}").open("xb") as target:
            shutil.copyfileobj(upload.content, target, _CHUNK)
    return case_from_folder(folder, max_bytes), _convention_of([f.name for f in files])


def _member_path(info: zipfile.ZipInfo, upload: str, nifti_only: bool = True) -> PurePosixPath | None:
    """Where a member goes, relative to the extraction folder (``None``: skipped), after every check.

    Raises:
        BratsxError: an absolute path, a ``..`` component, a link or an encrypted member.
    """
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise BratsxError(f"{upload}: member {info.filename!r} has an absolute path; zip the case folder itself")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BratsxError(f"{upload}: member {info.filename!r} points outside the archive ('..'); refused")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise BratsxError(f"{upload}: member {info.filename!r} is a symbolic link; zip the files themselves")
    if info.flag_bits & 0x1:
        raise BratsxError(f"{upload}: member {info.filename!r} is encrypted; upload an unencrypted .zip")
    if info.is_dir() or not parts or (nifti_only and _nifti_suffix(parts[-1]) is None):
        return None
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None  # hidden files and macOS resource forks
    safe = [_safe_component(p) for p in parts]
    if not all(safe):
        raise BratsxError(f"{upload}: member {info.filename!r} has a name of no usable characters; rename it")
    return PurePosixPath(*safe)


def extract_zip(archive: Path, upload: str, folder: Path, max_members: int, max_bytes: int,
                nifti_only: bool = True) -> None:
    """Extract the NIfTI members of ``archive`` into ``folder`` safely (see the module docstring).

    Args:
        archive: the uploaded file, saved by the server.
        upload: its name as the browser gave it (for messages only).
        folder: an empty folder of the job's.
        max_members: most entries the archive may hold.
        max_bytes: most bytes the NIfTI members may expand to, all together.
        nifti_only: extract only NIfTI files (``False``: every regular file, for raw scans: DICOM files have
            any name, and NIfTI files may come with their JSON sidecars).

    Raises:
        BratsxError: not a zip file, too many members or bytes, a member refused by the checks, or two
            members whose safe names coincide.
    """
    try:
        zipped = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise BratsxError(f"{upload}: not a readable .zip file ({error})") from None
    with zipped:
        members = zipped.infolist()
        if len(members) > max_members:
            raise BratsxError(f"{upload}: {len(members)} entries, more than the {max_members} allowed; zip one case "
                              "folder")
        chosen = [(info, path) for info in members if (path := _member_path(info, upload, nifti_only)) is not None]
        if len({path for _, path in chosen}) < len(chosen):
            raise BratsxError(f"{upload}: two members have the same name once made safe; rename them")
        written = 0
        for info, path in chosen:
            target = folder.joinpath(*path.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(info) as source, target.open("xb") as sink:
                while chunk := source.read(_CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        raise BratsxError(f"{upload}: expands to more than {max_bytes // (1024 * 1024)} MB; refused "
                                          "(the server's --max-unzipped-mb)")
                    sink.write(chunk)


def _niftis(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and _nifti_suffix(p.name) is not None)


def _gather_loose(folder: Path, upload: str) -> None:
    """Move the NIfTI files at an extracted archive's root into a case folder named after them (their common
    prefix, else the archive's name), so that the case never takes the server's own folder name."""
    loose = _niftis(folder)
    if not loose:
        return
    case_id = case_id_from_names([p.name for p in loose])
    if case_id == "case":
        case_id = _case_id(PurePosixPath(upload.replace("\\", "/")).stem)
    (folder / case_id).mkdir()
    for path in loose:
        path.rename(folder / case_id / path.name)


def raw_case_from_zip(folder: Path, upload: str) -> str:
    """The id of the one raw case (a DICOM study, or a folder of NIfTI files per sequence) an extracted ``.zip``
    holds, after checking that its four sequences can be told apart (as ``bratsx prepare`` identifies them).

    Raises:
        BratsxError: no raw case or several, a case that cannot be read, a sequence missing or doubled (one line),
            or the ``prepare`` extra not installed.
    """
    from ..prepare.identify import assign_sequences
    from ..prepare.ingest import discover_raw_cases
    from ..prepare.pipeline import require_prepare_extra

    require_prepare_extra()
    _gather_loose(folder, upload)
    cases = discover_raw_cases(folder)
    if len(cases) != 1:
        listed = ", ".join(c.case_id for c in cases[:4])
        raise BratsxError(f"{upload}: {len(cases)} cases ({listed}); upload one case (one study) at a time")
    [case] = cases
    if case.problems:
        raise BratsxError(f"case {case.case_id}: {case.problems[0]}")
    assign_sequences(case.case_id, case.series, {})
    return case.case_id


def case_from_zip(folder: Path, upload: str, max_bytes: int | None = None) -> Case:
    """The one case an extracted ``.zip`` holds, wherever in the archive's folders it lies.

    Args:
        folder: the folder :func:`extract_zip` wrote into.
        upload: the archive's name as the browser gave it (names files at the archive's root when they share
            no prefix).
        max_bytes: as :func:`case_from_folder`.

    Raises:
        BratsxError: as :func:`case_from_folder`.
    """
    root = folder
    while not _niftis(root) and len(entries := list(root.iterdir())) == 1 and entries[0].is_dir():
        root = entries[0]  # a zip of the folder above the case (or above that)
    if root == folder:
        _gather_loose(folder, upload)
    return case_from_folder(root, max_bytes)


def case_from_folder(folder: Path, max_bytes: int | None = None) -> Case:
    """The one case an upload folder holds, checked by the loader's header checks.

    Args:
        folder: an upload's folder.
        max_bytes: most bytes the case's four channels may take in memory as float32 (``None``: any).

    Raises:
        BratsxError: no case or several, or what the loader finds wrong in the headers (missing or doubled
            sequences, unreadable files, shapes or orientations that differ), as its one-line message.
    """
    try:
        cases = discover(folder).cases
    except BratsxError:
        raise BratsxError("no BraTS case in the upload: expected FLAIR, T1, T1ce and T2 NIfTI files named as in "
                          "a BraTS, MSD or plain case folder") from None
    if len(cases) != 1:
        listed = ", ".join(c.case_id for c in cases[:4])
        raise BratsxError(f"the upload holds {len(cases)} cases ({listed}); upload one case at a time")
    report = inspect_case(cases[0])
    # a problem of the reference alone does not stop segmentation: the result reports it
    image_problems = [p for p in report.problems if not isinstance(p, LabelError)]
    if image_problems:
        raise image_problems[0]
    if max_bytes is not None and report.geometry is not None:
        if math.prod(report.geometry.shape) * len(MODALITY_ORDER) * 4 > max_bytes:
            raise BratsxError(f"case {cases[0].case_id}: volumes of {report.geometry.shape} voxels are too large for "
                              "this server (its --max-unzipped-mb)")
    return cases[0]
