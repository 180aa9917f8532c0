"""Reading cases into the canonical 4-channel array, and writing label maps back in their geometry.

Loading is the first thing every stage does to every case, so it is built for speed: the four files
are read concurrently, gzip is decoded with ISA-L when ``isal`` is installed (3.5x faster than zlib
on four BraTS volumes decoded in parallel; a whole case loads 1.3x faster; zlib otherwise), voxels
are viewed straight in the decompressed buffer and converted once to float32 in canonical
orientation (no float64 copy, as ``get_fdata`` would make).
Every check on the way raises :class:`~bratsx.errors.CaseError` naming the case, the file and the
problem, so a batch can report a bad case and carry on.
"""

from __future__ import annotations

import io
import logging
import math
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .atomic import atomic_path
from .cases import NIFTI_SUFFIXES, Case, Layout
from .errors import BratsxError, CaseError, LabelError
from .extras import optional_module
from .geometry import Geometry, affine_problem
from .labels import (
    BRATS_CHANNELS,
    LabelConvention,
    LabelSetError,
    candidate_sets,
    detect_convention,
    unexpected_values,
    with_adult_glioma,
)

#: What decoding damaged gzip data raises (ISA-L's IsalError derives from Exception alone).
_GZIP_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, zlib.error, ValueError)
_isal_gzip = optional_module("isal.igzip")  # ISA-L's gzip decoder; optional, plain zlib is used without it
if _isal_gzip is not None:
    _GZIP_ERRORS += (optional_module("isal.igzip_lib").IsalError,)
_fast_gzip = _isal_gzip

__all__ = [
    "AFFINE_TOLERANCE",
    "CaseReport",
    "LoadedCase",
    "use_gzip_decoder",
    "load_case",
    "label_convention",
    "prediction_convention",
    "read_label_file",
    "inspect_case",
    "save_nifti_atomic",
    "write_label_map",
]

logger = logging.getLogger(__name__)

#: Largest difference allowed between the affine entries of a case's files (mm).
AFFINE_TOLERANCE = 1e-3
_MSD_CHANNELS = len(BRATS_CHANNELS)
_GZIP_MAGIC = b"\x1f\x8b"
#: Bytes read (and decompressed) to check a header alone: a NIfTI-2 header is 540.
_HEADER_READ = 4096
#: Header classes by the size a header states in its first four bytes.
_HEADER_CLASSES = {348: nib.Nifti1Header, 540: nib.Nifti2Header}


def use_gzip_decoder(name: str) -> None:
    """Choose the gzip decoder (``"isal"``, the default when installed, or ``"zlib"``).

    For benchmarks and troubleshooting; both decode the same bytes.
    """
    global _fast_gzip
    if name not in ("isal", "zlib"):
        raise ValueError(f"unknown gzip decoder {name!r}; choose 'isal' or 'zlib'")
    if name == "isal" and _isal_gzip is None:
        raise BratsxError("the isal package is not installed: pip install isal")
    _fast_gzip = _isal_gzip if name == "isal" else None


@dataclass(frozen=True)
class _Header:
    """What a NIfTI header says about its voxels, checked: shape, type, where they start, scaling, affine.

    ``header`` is the header as kept with the data in memory (no data offset, no scaling: as nibabel
    keeps it), which outputs copy.
    """

    header: nib.Nifti1Header
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int
    slope: float
    inter: float
    affine: np.ndarray

    @property
    def scaled(self) -> bool:
        return self.slope != 1.0 or self.inter != 0.0


@dataclass(frozen=True)
class _Volume:
    """One NIfTI file as read: its header and its voxels as stored (unscaled), viewed in the file's bytes."""

    stored: _Header
    data: np.ndarray


@dataclass
class LoadedCase:
    """A case in memory, ready for preprocessing.

    Attributes:
        case: where it came from.
        image: float32 ``(C, *geometry.canonical_shape)``, i.e. ``(4, z, y, x)`` for BraTS volumes, in
            canonical orientation (:data:`~bratsx.geometry.CANONICAL_ORIENTATION`), one channel per entry of the
            case's ``images`` in their order (:attr:`channels`: FLAIR, T1, T1ce, T2 unless a model asked discovery
            for others), intensities as stored (after the file's scaling, before any normalisation).
        geometry: the stored grid, to write outputs back in the input's geometry.
        label: uint8 canonical label map in ``convention``, if the case has one.
        convention: label convention of ``label`` (for plain folders, detected from its values).
    """

    case: Case
    image: np.ndarray
    geometry: Geometry
    label: np.ndarray | None = None
    convention: LabelConvention | None = None

    @property
    def channels(self) -> tuple[str, ...]:
        """The name of each channel of :attr:`image`, in order."""
        return tuple(self.case.images)


@dataclass(frozen=True)
class CaseReport:
    """What a check of a case found: its geometry (when readable) and every problem."""

    case: Case
    geometry: Geometry | None
    problems: tuple[CaseError, ...]


class _NibabelReports:
    """Takes the reports of nibabel's header checks (e.g. "negative pixdim made positive") as debug logs,
    instead of the lines nibabel's own logger prints on stderr."""

    @staticmethod
    def log(level: int, message: str) -> None:
        if level:
            logger.debug("nibabel header check: %s", message)


def _one_line(error: BaseException) -> str:
    """A foreign exception's message on one line (some span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def _decompress(raw: bytes) -> bytes:
    if _fast_gzip is not None:
        return _fast_gzip.decompress(raw)
    return zlib.decompress(raw, wbits=31)


def _read_bytes(path: Path, case_id: str, header_only: bool = False) -> bytes:
    """The content of a NIfTI file, decompressed; with ``header_only``, just enough for its header.

    The content decides, not the name: gzip data is decompressed whether or not the name ends in
    ``.gz``, and uncompressed data is read as it is, so a check and a load of one file agree.
    """
    try:
        with path.open("rb") as file:
            raw = file.read(_HEADER_READ if header_only else -1)
    except OSError as error:
        raise CaseError(case_id, f"cannot read the file ({error.strerror or error})", path) from error
    if not raw:
        raise CaseError(case_id, "empty file (0 bytes)", path)
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        if not header_only:
            return _decompress(raw)
        decompressor = zlib.decompressobj(wbits=31)
        start = decompressor.decompress(raw, _HEADER_READ)
        if len(raw) < _HEADER_READ and len(start) < _HEADER_READ and not decompressor.eof:
            raise EOFError("the whole file ends before the end of the gzip stream")
        return start
    except _GZIP_ERRORS as error:
        raise CaseError(case_id, f"corrupt or truncated gzip data ({_one_line(error)})", path) from error


def _affine(header: nib.Nifti1Header, case_id: str, path: Path) -> np.ndarray:
    """The voxel-to-world affine, chosen as nibabel does (sform, else qform, else the voxel sizes), except
    that a coded sform that cannot orient a volume (NaN, all zeros) gives way to a usable qform."""
    sources = {"sform": header.get_sform, "qform": header.get_qform}
    chosen = [name for name in sources if header[f"{name}_code"] != 0] or ["pixdim"]
    found = []
    for name in chosen:
        try:
            with np.errstate(all="ignore"):
                affine = sources.get(name, header.get_base_affine)()
        except Exception as error:  # nibabel raises several types for an impossible quaternion or pixdim
            found.append(f"{name}: {_one_line(error)}")
            continue
        problem = affine_problem(affine)
        if problem is None:
            return affine
        found.append(f"{name}: {problem}")
    raise CaseError(case_id, f"no usable voxel-to-world geometry ({'; '.join(found)}); fix the header's sform or "
                    "qform", path)


def _read_header(raw: bytes, case_id: str, path: Path, extensions: bool = True) -> _Header:
    """Parse and check the NIfTI-1 or NIfTI-2 header at the start of ``raw`` (extensions too, if asked)."""
    endian, size = next(((e, n) for e, order in (("<", "little"), (">", "big"))
                         if (n := int.from_bytes(raw[:4], order)) in _HEADER_CLASSES), ("", 0))
    if not size or len(raw) < size:
        raise CaseError(case_id, f"not a NIfTI file (its {len(raw)} bytes do not start with a NIfTI-1 or NIfTI-2 "
                        "header)", path)
    try:
        with np.errstate(all="ignore"):
            header = _HEADER_CLASSES[size].from_fileobj(io.BytesIO(raw if extensions else raw[:size]), endian,
                                                        check=False)
            header.check_fix(logger=_NibabelReports, error_level=40)
            dtype, (slope, inter) = header.get_data_dtype(), header.get_slope_inter()
    except Exception as error:  # nibabel raises several types for a bad header
        raise CaseError(case_id, f"not a readable NIfTI header ({_one_line(error)})", path) from error
    dims = [int(d) for d in header["dim"]]
    if not 1 <= dims[0] <= 7:
        raise CaseError(case_id, f"header dim[0] is {dims[0]}, not a number of dimensions (1 to 7)", path)
    shape = tuple(dims[1 : dims[0] + 1])
    if min(shape) < 0:
        raise CaseError(case_id, f"negative dimension in the header's shape {shape}", path)
    if dtype.kind not in "iuf":
        raise CaseError(case_id, f"unsupported voxel type {dtype} (complex or RGB); store intensities as integers "
                        "or floats", path)
    offset = float(header["vox_offset"])
    if not (math.isfinite(offset) and offset >= size):
        raise CaseError(case_id, f"vox_offset {offset:g} does not point past the {size}-byte header", path)
    kept = header.copy()
    kept["vox_offset"], kept["scl_slope"], kept["scl_inter"] = 0, np.nan, np.nan
    return _Header(kept, shape, dtype, int(offset), 1.0 if slope is None else slope, 0.0 if inter is None else inter,
                   _affine(header, case_id, path))


def _read_volume(path: Path, case_id: str) -> _Volume:
    """Read one NIfTI file: voxels viewed in place in the decompressed buffer (no copy)."""
    raw = _read_bytes(path, case_id)
    stored = _read_header(raw, case_id, path)
    needed = stored.offset + math.prod(stored.shape) * stored.dtype.itemsize
    if len(raw) < needed:
        raise CaseError(case_id, f"truncated: {len(raw)} bytes of voxel data where {needed} are needed", path)
    data = np.ndarray(stored.shape, dtype=stored.dtype, buffer=raw, offset=stored.offset, order="F")
    return _Volume(stored, data)


def _spatial_shape(case_id: str, path: Path, shape: tuple[int, ...], four_d: bool) -> tuple[int, int, int]:
    """Check the dimensionality of an image: 3D (trailing singleton axes allowed) or 4D x 4 for MSD."""
    dims = list(shape)
    while len(dims) > (4 if four_d else 3) and dims[-1] == 1:
        dims.pop()
    if four_d:
        if len(dims) != 4 or dims[3] != _MSD_CHANNELS:
            raise CaseError(case_id, f"expected a 4D image with {_MSD_CHANNELS} channels, got shape {shape}", path)
    elif len(dims) != 3:
        raise CaseError(case_id, f"expected a 3D image, got shape {shape}", path)
    if min(dims[:3]) < 1:
        raise CaseError(case_id, f"empty image of shape {shape}", path)
    return tuple(dims[:3])


def _check_same_grid(
    case_id: str, path: Path, shape: tuple[int, ...], affine: np.ndarray, reference: Geometry, whose: str
) -> None:
    """Check a file against the case's grid; ``whose`` names the reference, e.g. ``FLAIR's``."""
    if shape != reference.shape:
        raise CaseError(case_id, f"shape {shape} differs from {whose} {reference.shape}", path)
    difference = float(np.abs(affine - reference.affine).max())
    if difference > AFFINE_TOLERANCE:
        raise CaseError(
            case_id,
            f"affine differs from {whose} by up to {difference:.4g} mm (tolerance {AFFINE_TOLERANCE} mm); "
            "the modalities must be co-registered on one grid",
            path,
        )


def _to_canonical_float32(
    case_id: str, path: Path, volume: _Volume, data: np.ndarray, geometry: Geometry, out: np.ndarray, what: str
) -> None:
    """Write ``data`` (stored orientation) into ``out`` as canonical float32 with the file's scaling, checked:
    not all zeros as stored, and finite once in float32 (NaN, overflow of float64 or of the scaling)."""
    if not data.any():
        raise CaseError(case_id, f"{what} is all zeros", path)
    stored = volume.stored
    with np.errstate(over="ignore", invalid="ignore"):
        np.copyto(out, geometry.to_canonical(data), casting="unsafe")
        if stored.slope != 1.0:
            out *= np.float32(stored.slope)
        if stored.inter != 0.0:
            out += np.float32(stored.inter)
    if (data.dtype.kind == "f" or stored.scaled) and not np.isfinite(out).all():
        bad = int(out.size - np.count_nonzero(np.isfinite(out)))
        scaling = f" after the file's scaling (slope {stored.slope:g}, intercept {stored.inter:g})" if stored.scaled \
            else ""
        raise CaseError(case_id, f"{what} has {bad} NaN or infinite voxels{scaling}", path)


def label_convention(labels: np.ndarray, case_id: str, path: Path, convention: LabelConvention | None = None,
                     candidates: tuple[LabelConvention, ...] | None = None) -> LabelConvention:
    """The label set of a map (given, or read from its values), checked against its values.

    Args:
        labels: the label map.
        case_id, path: named in errors.
        convention: the set, when stated (``--labels``, the layout, a dataset.json).
        candidates: the sets the case could belong to when none is stated (default: by its id,
            :func:`~bratsx.labels.candidate_sets`).

    Raises:
        CaseError: one line: the values fit no candidate, or candidates that read them differently
            (naming them and ``--labels``), or not the given set.
    """
    candidates = candidates or candidate_sets(case_id)
    if convention is None and len(candidates) == 1:
        convention = candidates[0]  # the layout or id states it
    if convention is None:
        try:
            convention = detect_convention(labels, candidates)
        except LabelSetError as error:
            raise CaseError(case_id, str(error), path) from None
    bad = unexpected_values(labels, convention)
    if bad:
        allowed = sorted(convention.allowed_values)
        raise CaseError(case_id, f"label values {bad} are not in the {convention.value} label set {allowed}", path)
    return convention


def prediction_convention(labels: np.ndarray, case_id: str, path: Path, convention: LabelConvention | None,
                          candidates: tuple[LabelConvention, ...]) -> LabelConvention:
    """The label set of a prediction for a case whose maps could be in ``candidates``: given, else read among
    them, else among them and the adult glioma sets (another tool may write BraTS 2023 values for a 2018 case).

    Raises:
        CaseError: as :func:`label_convention`, about the wider candidates.
    """
    try:
        return label_convention(labels, case_id, path, convention, candidates)
    except CaseError:
        if convention is not None:
            raise
        return label_convention(labels, case_id, path, None, with_adult_glioma(candidates))


@contextmanager
def _about_the_label() -> Iterator[None]:
    """Re-raise a :class:`CaseError` about a case's reference segmentation as a :class:`LabelError`."""
    try:
        yield
    except LabelError:
        raise
    except CaseError as error:
        raise LabelError(error.case_id, error.problem, error.path) from error


def _read_label(case: Case, geometry: Geometry, convention: LabelConvention | None):
    """Read, check and canonicalise the label map; returns (labels, convention).

    Raises:
        LabelError: the label map cannot be used.
    """
    with _about_the_label():
        data, label_geometry = read_label_file(case.label, case.case_id)
        _check_same_grid(case.case_id, case.label, label_geometry.shape, label_geometry.affine, geometry,
                         "the images'")
        convention = label_convention(data, case.case_id, case.label, convention, case.label_sets)
    return np.ascontiguousarray(geometry.to_canonical(data), dtype=np.uint8), convention


def _whose(channel: str) -> str:
    """The reference grid's owner in a grid error: ``FLAIR's``."""
    return f"{channel.upper()}'s"


def _split_problems(case: Case) -> tuple[list[CaseError], list[CaseError]]:
    """The problems discovery recorded on a case: those of its images, and those of its reference alone."""
    of_label = [p for p in case.problems if isinstance(p, LabelError)]
    return [p for p in case.problems if not isinstance(p, LabelError)], of_label


def load_case(
    case: Case, *, with_label: bool = True, convention: LabelConvention | None = None
) -> LoadedCase:
    """Read a case into a canonical float32 array, checking everything on the way.

    The files are read concurrently, one channel per entry of ``case.images``. Checks: every channel
    present once as a readable file, images 3D (4D with 4 channels for MSD), a usable orientation, equal
    shapes and affines (within :data:`AFFINE_TOLERANCE`), no NaN/Inf (after the file's scaling, in float32),
    no all-zero channel, the file complete, label values within the convention. A file is read by its content:
    gzip data in a ``.nii`` file and uncompressed data in a ``.nii.gz`` file are both read.

    Args:
        case: from :func:`~bratsx.cases.discover_cases`.
        with_label: also read the reference label map when the case has one.
        convention: the label convention, overriding the layout's (and detection for plain folders).

    Returns:
        The loaded case.

    Raises:
        LabelError: the images are fine but the reference cannot be used (raised only with
            ``with_label``; load again without it to segment the case).
        CaseError: naming the case, the file and what is wrong.
    """
    image_problems, label_problems = _split_problems(case)
    if image_problems:
        raise image_problems[0]
    channels = tuple(case.images)
    paths = list(dict.fromkeys(case.images.values()))
    four_d = case.layout is Layout.MSD
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        volumes = dict(zip(paths, pool.map(lambda p: _read_volume(p, case.case_id), paths)))

        first = volumes[paths[0]]
        shape = _spatial_shape(case.case_id, paths[0], first.data.shape, four_d)
        geometry = Geometry(shape, first.stored.affine, first.stored.header)
        for path in paths:
            volume = volumes[path]
            _check_same_grid(
                case.case_id, path, _spatial_shape(case.case_id, path, volume.data.shape, four_d),
                volume.stored.affine, geometry, _whose(channels[0]),
            )

        image = np.empty((len(channels), *geometry.canonical_shape), dtype=np.float32)

        def fill(index: int, channel: str) -> None:
            path = case.images[channel]
            volume = volumes[path]
            data = (volume.data[..., BRATS_CHANNELS.index(channel)] if four_d
                    else volume.data.reshape(shape, order="F"))
            name = f"{channel.upper()} channel" if four_d else channel.upper()
            _to_canonical_float32(case.case_id, path, volume, data, geometry, image[index], name)

        list(pool.map(fill, range(len(channels)), channels))

    label, label_convention = None, None
    if with_label and label_problems:
        raise label_problems[0]
    if with_label and case.label is not None:
        label, label_convention = _read_label(case, geometry, convention)
    return LoadedCase(case, image, geometry, label, label_convention)


def read_label_file(path: Path, case_id: str) -> tuple[np.ndarray, Geometry]:
    """A label map as stored (no reorientation) with its geometry, for comparing files made by anything.

    Raises:
        CaseError: unreadable, truncated, not 3D, no usable orientation, or non-finite values.
    """
    volume = _read_volume(Path(path), case_id)
    shape = _spatial_shape(case_id, Path(path), volume.data.shape, four_d=False)
    data = volume.data.reshape(shape, order="F")
    if volume.stored.scaled:
        with np.errstate(over="ignore", invalid="ignore"):
            data = data * volume.stored.slope + volume.stored.inter
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise CaseError(case_id, "label map has NaN or infinite values", path)
    return data, Geometry(shape, volume.stored.affine, volume.stored.header)


def inspect_case(case: Case, *, read_voxels: bool = False) -> CaseReport:
    """Check a case without raising: from its headers alone (fast), or by loading it fully.

    The header check covers the files' kinds, dimensions, orientations, shapes and affines;
    ``read_voxels`` adds every check of :func:`load_case` (corrupt or truncated data, NaN/Inf,
    all-zero modalities, label values). Files are read as :func:`load_case` reads them, so both
    accept and refuse the same files. Problems of the reference alone are
    :class:`~bratsx.errors.LabelError`.
    """
    problems = list(case.problems)
    reported = {problem.path for problem in case.problems}
    geometry = None
    four_d = case.layout is Layout.MSD
    for path in case.files:
        if path in reported:
            continue
        is_label = path == case.label
        try:
            with _about_the_label() if is_label else nullcontext():
                stored = _read_header(_read_bytes(path, case.case_id, header_only=True), case.case_id, path,
                                      extensions=False)
                shape = _spatial_shape(case.case_id, path, stored.shape, four_d and not is_label)
                if geometry is None:
                    geometry = Geometry(shape, stored.affine, stored.header)
                else:
                    _check_same_grid(case.case_id, path, shape, stored.affine, geometry,
                                     "the images'" if is_label else _whose(next(iter(case.images))))
        except CaseError as error:
            problems.append(error)
            break
    image_problems = [p for p in problems if not isinstance(p, LabelError)]
    if read_voxels and not image_problems:
        try:
            load_case(case, with_label=not problems)
        except CaseError as error:
            problems.append(error)
    return CaseReport(case, geometry, tuple(problems))


def save_nifti_atomic(image: nib.Nifti1Image, path: Path | str) -> Path:
    """Save a NIfTI image so that ``path`` is either absent or complete, never partial.

    (See :mod:`bratsx.atomic`; the temporary name keeps the suffix, which decides compression.)
    """
    path = Path(path)
    suffix = next((s for s in NIFTI_SUFFIXES if path.name.lower().endswith(s)), None)
    if suffix is None:
        raise ValueError(f"{path}: a NIfTI output must end with .nii or .nii.gz")
    with atomic_path(path, suffix=path.name[-len(suffix):]) as temporary:
        nib.save(image, temporary)
    return path


def write_label_map(labels: np.ndarray, geometry: Geometry, path: Path | str) -> Path:
    """Write a canonical-orientation label map in the input's own geometry, atomically.

    The output has the input's shape, affine, orientation and spacing, and a copy of its header
    with the data type set to uint8 and any intensity scaling removed.

    Args:
        labels: integer label map in canonical orientation, of shape ``geometry.canonical_shape``.
        geometry: the input case's geometry, from :func:`load_case`.
        path: output file (``.nii.gz`` or ``.nii``).
    """
    if labels.shape != geometry.canonical_shape:
        raise ValueError(f"label map shape {labels.shape} does not match the case's {geometry.canonical_shape}")
    # Fortran order is NIfTI's: for canonical C-ordered input this is a view, written without reordering.
    stored = np.asfortranarray(geometry.from_canonical(labels.astype(np.uint8, copy=False)))
    header = geometry.header.copy()
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(1.0, 0.0)
    header["cal_min"], header["cal_max"] = 0, int(stored.max(initial=0))
    header["descrip"] = b"bratsx segmentation"
    return save_nifti_atomic(nib.Nifti1Image(stored, geometry.affine, header), path)
