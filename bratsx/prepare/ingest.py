"""Find the raw cases in an input folder: DICOM studies (any nesting) or folders of NIfTI files.

DICOM headers are read with pydicom (``stop_before_pixels``), grouped by StudyInstanceUID (one case
per study) and SeriesInstanceUID (one candidate sequence per series). The pixels are read later by
SimpleITK's GDCM-based series reader (:func:`read_series`), which returns the image with its DICOM
geometry (origin, direction, spacing) ready for SimpleITK's registration, with no external binary and
no intermediate NIfTI file. dcm2niix handles more vendor quirks (Siemens mosaics, some enhanced
multi-frame objects) but runs as a subprocess writing files; the single-frame axial/sagittal/coronal
series a tumour protocol produces read exactly through GDCM, and pydicom keeps the UIDs that the
DICOM-SEG written back needs.

Nothing here raises for one bad file: problems are attached to the case they belong to, so one
broken study stops only itself.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CaseError

__all__ = ["RawCase", "Series", "discover_raw_cases", "read_series"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Media Storage Directory Storage: the SOP class of a DICOMDIR.
DICOMDIR_STORAGE = "1.2.840.10008.1.3.10"
#: Where the DICOM magic word sits in a file with the standard preamble.
_DICM_OFFSET = 128


@dataclass(frozen=True)
class Series:
    """One acquisition that may be one of the four sequences.

    Attributes:
        key: SeriesInstanceUID for DICOM, the file name for NIfTI; what ``--map`` may name.
        label: short display name (``#5 MRHR FLAIR AX`` or the file name).
        description: SeriesDescription and ProtocolName for DICOM, the file name for NIfTI.
        modality: DICOM Modality (``MR``), ``MR`` for NIfTI.
        image_type: DICOM ImageType values, upper case.
        scanning_sequence: ScanningSequence, SequenceVariant and SequenceName, joined.
        echo_time, repetition_time, inversion_time: in ms, ``None`` when not recorded.
        contrast_agent: ContrastBolusAgent (empty when absent).
        slices: number of slices (DICOM files, or the NIfTI's third dimension).
        files: the DICOM files of the series sorted along the slice normal, or the one NIfTI file.
        number: SeriesNumber (DICOM), or ``None``.
        slice_positions: each file's position along the slice normal (mm), sorted; empty for NIfTI.
    """

    key: str
    label: str
    description: str
    modality: str = "MR"
    image_type: tuple[str, ...] = ()
    scanning_sequence: str = ""
    echo_time: float | None = None
    repetition_time: float | None = None
    inversion_time: float | None = None
    contrast_agent: str = ""
    slices: int = 0
    files: tuple[Path, ...] = ()
    number: int | None = None
    slice_positions: tuple[float, ...] = ()

    @property
    def is_dicom(self) -> bool:
        """Whether the series was read from DICOM files."""
        return not self.files[0].name.lower().endswith(NIFTI_SUFFIXES)


@dataclass
class RawCase:
    """One case to prepare: a DICOM study or a folder of NIfTI files.

    Attributes:
        case_id: ``<PatientID>_<StudyDate>`` (plus a short study hash when two studies share it) or the folder name.
        source: the study's common folder, or the NIfTI folder.
        series: every series found, before identification.
        problems: reasons the case cannot be prepared at all (a corrupt file), one line each.
    """

    case_id: str
    source: Path
    series: list[Series] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def is_dicom(self) -> bool:
        """Whether the case came from DICOM files."""
        return bool(self.series) and self.series[0].is_dicom


def _looks_like_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(_DICM_OFFSET)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _number(value) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return " ".join(str(v) for v in value)
    return str(value)


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "case"


def _slice_position(dataset) -> float:
    """Position of a slice along its normal (mm), to sort a series' files."""
    orientation = np.asarray(dataset.ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    return float(np.dot(normal, np.asarray(dataset.ImagePositionPatient, dtype=float)))


def _series_from_dicom(datasets: list, files: list[Path]) -> Series:
    first = datasets[0]
    try:
        positions = [_slice_position(d) for d in datasets]
    except (AttributeError, TypeError, ValueError):
        positions = []
    order = np.argsort(positions or [int(getattr(d, "InstanceNumber", 0) or 0) for d in datasets], kind="stable")
    number = getattr(first, "SeriesNumber", None)
    description = " ".join(filter(None, (_text(getattr(first, "SeriesDescription", "")),
                                          _text(getattr(first, "ProtocolName", "")))))
    label = f"#{number} {_text(getattr(first, 'SeriesDescription', '')) or '(no description)'}"
    return Series(
        key=str(first.SeriesInstanceUID),
        label=label,
        description=description,
        modality=_text(getattr(first, "Modality", "")).upper(),
        image_type=tuple(v.upper() for v in _text(getattr(first, "ImageType", "")).split()),
        scanning_sequence=" ".join(_text(getattr(first, tag, "")) for tag in
                                   ("ScanningSequence", "SequenceVariant", "SequenceName")).strip(),
        echo_time=_number(getattr(first, "EchoTime", None)),
        repetition_time=_number(getattr(first, "RepetitionTime", None)),
        inversion_time=_number(getattr(first, "InversionTime", None)),
        contrast_agent=_text(getattr(first, "ContrastBolusAgent", "")).strip(),
        slices=len(files),
        files=tuple(files[i] for i in order),
        number=int(number) if number not in (None, "") else None,
        slice_positions=tuple(positions[i] for i in order) if positions else (),
    )


def _sidecar(path: Path) -> dict:
    """The BIDS JSON dcm2niix writes beside a NIfTI file (``scan.json`` for ``scan.nii.gz``), if any."""
    import json

    stem = path.name[: -len(next(s for s in NIFTI_SUFFIXES if path.name.lower().endswith(s)))]
    sidecar = path.with_name(stem + ".json")
    try:
        content = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _from_descrip(descrip: str, name: str) -> float | None:
    """``TE=110;Time=...`` as dcm2niix writes the NIfTI description field: the value in ms."""
    found = re.search(rf"(?:^|;)\s*{name}=([0-9.eE+-]+)", descrip)
    return _number(found.group(1)) if found else None


def _series_from_nifti(path: Path) -> Series:
    """A NIfTI file as a series: its name, plus timing and description from a dcm2niix sidecar or header."""
    import nibabel as nib

    image = nib.load(path)
    shape = image.shape
    descrip = bytes(image.header.get("descrip", b"")).split(b"\0")[0].decode("latin-1", "replace")
    sidecar = _sidecar(path)

    def milliseconds(key: str, short: str) -> float | None:
        seconds = _number(sidecar.get(key))
        return seconds * 1000.0 if seconds is not None else _from_descrip(descrip, short)

    description = " ".join(filter(None, (path.name, _text(sidecar.get("SeriesDescription", "")),
                                         _text(sidecar.get("ProtocolName", "")))))
    return Series(
        key=path.name, label=path.name, description=description,
        modality=_text(sidecar.get("Modality", "MR")).upper() or "MR",
        image_type=tuple(v.upper() for v in sidecar.get("ImageType", []) if isinstance(v, str)),
        scanning_sequence=" ".join(_text(sidecar.get(k, "")) for k in ("ScanningSequence", "SequenceName")).strip(),
        echo_time=milliseconds("EchoTime", "TE"), repetition_time=milliseconds("RepetitionTime", "TR"),
        inversion_time=milliseconds("InversionTime", "TI"),
        contrast_agent=_text(sidecar.get("ContrastBolusAgent", "")).strip(),
        slices=int(shape[2]) if len(shape) >= 3 else 1, files=(path,),
    )


def _dicom_cases(files: list[Path]) -> list[RawCase]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    studies: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    corrupt: list[Path] = []
    for path in files:
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, TypeError, AttributeError):
            if _looks_like_dicom(path) or path.suffix.lower() == ".dcm":
                corrupt.append(path)
            continue
        study, series = getattr(dataset, "StudyInstanceUID", None), getattr(dataset, "SeriesInstanceUID", None)
        if study is None or series is None:
            storage = str(getattr(getattr(dataset, "file_meta", None), "MediaStorageSOPClassUID", ""))
            if storage != DICOMDIR_STORAGE:  # a DICOMDIR indexes a CD and belongs to no series; else: cut short
                corrupt.append(path)
            continue
        studies[str(study)][str(series)].append((dataset, path))
    cases: list[RawCase] = []
    folder_of_study: dict[Path, RawCase] = {}
    used_ids: set[str] = set()
    for study_uid, series_map in studies.items():
        first = next(iter(series_map.values()))[0][0]
        case_id = _safe_id(f"{_text(getattr(first, 'PatientID', '')) or 'patient'}_"
                           f"{_text(getattr(first, 'StudyDate', '')) or 'nodate'}")
        if case_id in used_ids:
            case_id += "_" + hashlib.sha1(study_uid.encode()).hexdigest()[:6]
        used_ids.add(case_id)
        all_files = [p for entries in series_map.values() for _, p in entries]
        common = Path(*Path(all_files[0]).parent.parts[: _common_depth(all_files)])
        case = RawCase(case_id, common)
        for entries in series_map.values():
            case.series.append(_series_from_dicom([d for d, _ in entries], [p for _, p in entries]))
        case.series.sort(key=lambda s: (s.number is None, s.number or 0, s.key))
        cases.append(case)
        for path in all_files:
            folder_of_study.setdefault(path.parent, case)
    for path in corrupt:
        owner = folder_of_study.get(path.parent)
        if owner is None:
            owner = RawCase(_safe_id(path.parent.name), path.parent)
            cases.append(owner)
            folder_of_study[path.parent] = owner
        owner.problems.append(f"file {path.name}: not a readable DICOM file (corrupt or truncated header)")
    return cases


def _common_depth(paths: list[Path]) -> int:
    parts = [p.parent.parts for p in paths]
    depth = 0
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        depth += 1
    return depth


def discover_raw_cases(root: Path | str) -> list[RawCase]:
    """Every case under ``root``: one per DICOM study, one per folder holding NIfTI files.

    Args:
        root: a folder (searched recursively) or a single NIfTI folder.

    Returns:
        The cases sorted by id; a case with :attr:`RawCase.problems` cannot be prepared.

    Raises:
        BratsxError: ``root`` is not a folder or holds neither DICOM nor NIfTI files.
    """
    from ..errors import BratsxError

    root = Path(root)
    if not root.is_dir():
        raise BratsxError(f"{root}: not a folder (give a folder of DICOM files or of NIfTI files per sequence)")
    nifti: dict[Path, list[Path]] = defaultdict(list)
    others: list[Path] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if path.name.lower().endswith(NIFTI_SUFFIXES):
            nifti[path.parent].append(path)
        else:
            others.append(path)
    cases = _dicom_cases(others)
    for folder, paths in nifti.items():
        case = RawCase(_safe_id(folder.name), folder)
        for path in paths:
            try:
                case.series.append(_series_from_nifti(path))
            except Exception as error:  # nibabel raises many types for damaged files
                case.problems.append(f"file {path.name}: not a readable NIfTI file ({type(error).__name__})")
        cases.append(case)
    if not cases:
        raise BratsxError(f"{root}: no DICOM or NIfTI files found")
    return sorted(cases, key=lambda c: c.case_id)


def read_series(series: Series, case_id: str):
    """The series as a float32 SimpleITK image with its scanner geometry.

    Args:
        series: a series from :func:`discover_raw_cases`.
        case_id: for error messages.

    Raises:
        CaseError: a file cannot be decoded (the file is named), or the volume is not 3D.
    """
    import SimpleITK as sitk

    problem = _stack_problem(series.slice_positions)
    if problem:
        raise CaseError(case_id, f"series {series.label}: {problem}", series.files[0])
    try:
        if series.is_dicom:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames([str(p) for p in series.files])
            reader.SetOutputPixelType(sitk.sitkFloat32)
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(series.files[0]), sitk.sitkFloat32)
    except RuntimeError:
        raise CaseError(case_id, f"series {series.label}: cannot be decoded", _first_unreadable(series)) from None
    if image.GetDimension() != 3:
        raise CaseError(case_id, f"series {series.label}: a {image.GetDimension()}D image, expected 3D",
                        series.files[0])
    return image


#: Slice gaps may vary by this fraction before a stack is called uneven (rounding in the headers).
SPACING_TOLERANCE = 0.1


def _stack_problem(positions: tuple[float, ...]) -> str:
    """Why slices at these positions are not one evenly spaced volume ('' when they are)."""
    if len(positions) < 2:
        return ""
    gaps = np.diff(positions)
    if gaps.min() < 1e-3:
        return (f"{int((gaps < 1e-3).sum()) + 1} slices share a position (several echoes or volumes in one "
                "series); split it or name another series with --map")
    if gaps.max() > gaps.min() * (1 + SPACING_TOLERANCE):
        return f"uneven slice spacing ({gaps.min():.2f} to {gaps.max():.2f} mm): missing slices?"
    return ""


def _first_unreadable(series: Series) -> Path:
    """The first file of a series that SimpleITK cannot decode on its own (the corrupt one)."""
    import SimpleITK as sitk

    for path in series.files:
        try:
            sitk.ReadImage(str(path))
        except RuntimeError:
            return path
    return series.files[0]
