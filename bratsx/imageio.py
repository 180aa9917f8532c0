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

import gzip
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .atomic import atomic_path
from .cases import NIFTI_SUFFIXES, Case, Layout
from .errors import BratsxError, CaseError
from .geometry import Geometry
from .labels import MODALITY_ORDER, LabelConvention, Modality, detect_convention, unexpected_values

try:  # ISA-L's gzip decoder; optional, plain zlib is used without it
    from isal import igzip as _isal_gzip
except ImportError:  # pragma: no cover - depends on the install
    _isal_gzip = None
_fast_gzip = _isal_gzip

__all__ = [
    "AFFINE_TOLERANCE",
    "CaseReport",
    "LoadedCase",
    "use_gzip_decoder",
    "load_case",
    "label_convention",
    "read_label_file",
    "inspect_case",
    "save_nifti_atomic",
    "write_label_map",
]

#: Largest difference allowed between the affine entries of a case's files (mm).
AFFINE_TOLERANCE = 1e-3
_MSD_CHANNELS = len(MODALITY_ORDER)


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
class _Volume:
    """One NIfTI file as read: header, voxel array as stored (unscaled), and the scaling to apply."""

    header: nib.Nifti1Header
    affine: np.ndarray
    data: np.ndarray
    slope: float
    inter: float


@dataclass
class LoadedCase:
    """A case in memory, ready for preprocessing.

    Attributes:
        case: where it came from.
        image: float32 ``(4, *geometry.canonical_shape)``, i.e. ``(4, z, y, x)`` for BraTS volumes, in
            canonical orientation (:data:`~bratsx.geometry.CANONICAL_ORIENTATION`), channels FLAIR, T1, T1ce, T2,
            intensities as stored (after the file's scaling, before any normalisation).
        geometry: the stored grid, to write outputs back in the input's geometry.
        label: uint8 canonical label map in ``convention``, if the case has one.
        convention: label convention of ``label`` (for plain folders, detected from its values).
    """

    case: Case
    image: np.ndarray
    geometry: Geometry
    label: np.ndarray | None = None
    convention: LabelConvention | None = None


@dataclass(frozen=True)
class CaseReport:
    """What a check of a case found: its geometry (when readable) and every problem."""

    case: Case
    geometry: Geometry | None
    problems: tuple[CaseError, ...]


def _decompress(raw: bytes) -> bytes:
    if _fast_gzip is not None:
        return _fast_gzip.decompress(raw)
    return zlib.decompress(raw, wbits=31)


def _read_bytes(path: Path, case_id: str) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise CaseError(case_id, f"cannot read the file ({error.strerror or error})", path) from error
    if raw[:2] == b"\x1f\x8b":
        try:
            return _decompress(raw)
        except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as error:
            raise CaseError(case_id, f"corrupt or truncated gzip data ({error})", path) from error
    if path.name.lower().endswith(".gz"):
        raise CaseError(case_id, "named .gz but not gzip-compressed", path)
    return raw


def _image_from_bytes(raw: bytes) -> nib.Nifti1Image:
    header_size = int.from_bytes(raw[:4], "little") if len(raw) >= 4 else 0
    if header_size not in (348, 540):
        header_size = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else 0
    klass = nib.Nifti2Image if header_size == 540 else nib.Nifti1Image
    return klass.from_bytes(raw)


def _read_volume(path: Path, case_id: str) -> _Volume:
    """Read one NIfTI file: voxels viewed in place in the decompressed buffer (no copy)."""
    raw = _read_bytes(path, case_id)
    try:
        image = _image_from_bytes(raw)
    except Exception as error:  # nibabel raises several types for a bad header
        raise CaseError(case_id, f"not a readable NIfTI file ({error})", path) from error
    proxy = image.dataobj  # the on-disk layout: the in-memory header resets vox_offset
    shape, dtype, offset = tuple(int(s) for s in proxy.shape), np.dtype(proxy.dtype), int(proxy.offset)
    needed = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) < needed:
        raise CaseError(case_id, f"truncated: {len(raw)} bytes of voxel data where {needed} are needed", path)
    data = np.ndarray(shape, dtype=dtype, buffer=raw, offset=offset, order="F")
    return _Volume(image.header, image.affine, data, float(proxy.slope), float(proxy.inter))


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
    case_id: str, path: Path, shape: tuple[int, ...], affine: np.ndarray, reference: Geometry, what: str
) -> None:
    if shape != reference.shape:
        raise CaseError(case_id, f"shape {shape} differs from {what}'s {reference.shape}", path)
    difference = float(np.abs(affine - reference.affine).max())
    if difference > AFFINE_TOLERANCE:
        raise CaseError(
            case_id,
            f"affine differs from {what}'s by up to {difference:.4g} mm (tolerance {AFFINE_TOLERANCE} mm); "
            "the modalities must be co-registered on one grid",
            path,
        )


def _check_voxels(case_id: str, path: Path, data: np.ndarray, what: str) -> None:
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        raise CaseError(case_id, f"{what} has {bad} NaN or infinite voxels", path)
    if not data.any():
        raise CaseError(case_id, f"{what} is all zeros", path)


def _to_canonical_float32(volume: _Volume, data: np.ndarray, geometry: Geometry, out: np.ndarray) -> None:
    """Write ``data`` (stored orientation) into ``out`` as canonical float32, applying the scaling."""
    np.copyto(out, geometry.to_canonical(data), casting="unsafe")
    if volume.slope != 1.0:
        out *= np.float32(volume.slope)
    if volume.inter != 0.0:
        out += np.float32(volume.inter)


def label_convention(labels: np.ndarray, case_id: str, path: Path, convention: LabelConvention | None = None):
    """The convention of a label map (given, or read from its values), checked against its values.

    Raises:
        CaseError: when the values fit neither BraTS convention, or not the given one.
    """
    convention = convention or detect_convention(labels)
    if convention is None:
        raise CaseError(case_id, "label values match neither BraTS convention (0/1/2/4 or 0/1/2/3); "
                        "give the convention", path)
    bad = unexpected_values(labels, convention)
    if bad:
        allowed = sorted(convention.allowed_values)
        raise CaseError(case_id, f"label values {bad} are not in the {convention.value} convention {allowed}", path)
    return convention


def _read_label(case: Case, geometry: Geometry, convention: LabelConvention | None):
    """Read, check and canonicalise the label map; returns (labels, convention)."""
    data, label_geometry = read_label_file(case.label, case.case_id)
    _check_same_grid(case.case_id, case.label, label_geometry.shape, label_geometry.affine, geometry, "the images")
    convention = label_convention(data, case.case_id, case.label, convention or case.convention)
    return np.ascontiguousarray(geometry.to_canonical(data), dtype=np.uint8), convention


def load_case(
    case: Case, *, with_label: bool = True, convention: LabelConvention | None = None
) -> LoadedCase:
    """Read a case into a canonical float32 array, checking everything on the way.

    The files are read concurrently. Checks: every modality present once, images 3D (4D with 4
    channels for MSD), equal shapes and affines (within :data:`AFFINE_TOLERANCE`), no NaN/Inf, no
    all-zero modality, the file readable and complete, label values within the convention.

    Args:
        case: from :func:`~bratsx.cases.discover_cases`.
        with_label: also read the reference label map when the case has one.
        convention: the label convention, overriding the layout's (and detection for plain folders).

    Returns:
        The loaded case.

    Raises:
        CaseError: naming the case, the file and what is wrong.
    """
    if case.problems:
        raise case.problems[0]
    paths = list(dict.fromkeys(case.images[m] for m in MODALITY_ORDER))
    four_d = case.layout is Layout.MSD
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        volumes = dict(zip(paths, pool.map(lambda p: _read_volume(p, case.case_id), paths)))

        first = volumes[paths[0]]
        shape = _spatial_shape(case.case_id, paths[0], first.data.shape, four_d)
        geometry = Geometry(shape, first.affine, first.header)
        for path in paths:
            volume = volumes[path]
            _check_same_grid(
                case.case_id, path, _spatial_shape(case.case_id, path, volume.data.shape, four_d),
                volume.affine, geometry, "FLAIR",
            )

        image = np.empty((_MSD_CHANNELS, *geometry.canonical_shape), dtype=np.float32)

        def fill(channel: int, modality: Modality) -> None:
            path = case.images[modality]
            volume = volumes[path]
            data = volume.data[..., channel] if four_d else volume.data.reshape(shape, order="F")
            name = f"{modality.value.upper()} channel" if four_d else modality.value.upper()
            _check_voxels(case.case_id, path, data, name)
            _to_canonical_float32(volume, data, geometry, image[channel])

        list(pool.map(fill, range(_MSD_CHANNELS), MODALITY_ORDER))

    label, label_convention = None, None
    if with_label and case.label is not None:
        label, label_convention = _read_label(case, geometry, convention)
    return LoadedCase(case, image, geometry, label, label_convention)


def read_label_file(path: Path, case_id: str) -> tuple[np.ndarray, Geometry]:
    """A label map as stored (no reorientation) with its geometry, for comparing files made by anything.

    Raises:
        CaseError: unreadable, truncated, not 3D, or non-finite values.
    """
    volume = _read_volume(Path(path), case_id)
    shape = _spatial_shape(case_id, Path(path), volume.data.shape, four_d=False)
    data = volume.data.reshape(shape, order="F")
    if volume.slope != 1.0 or volume.inter != 0.0:
        data = data * volume.slope + volume.inter
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise CaseError(case_id, "label map has NaN or infinite values", path)
    return data, Geometry(shape, volume.affine, volume.header)


def inspect_case(case: Case, *, read_voxels: bool = False) -> CaseReport:
    """Check a case without raising: from its headers alone (fast), or by loading it fully.

    The header check covers dimensions, shapes and affines; ``read_voxels`` adds every check of
    :func:`load_case` (corrupt or truncated data, NaN/Inf, all-zero modalities, label values).
    """
    problems = list(case.problems)
    geometry = None
    four_d = case.layout is Layout.MSD
    path = case.folder
    try:
        for path in case.files:
            header_image = nib.load(path)
            is_label = path == case.label
            shape = _spatial_shape(case.case_id, path, header_image.shape, four_d and not is_label)
            if geometry is None:
                geometry = Geometry(shape, header_image.affine, header_image.header)
            else:
                what = "the images" if is_label else "FLAIR"
                _check_same_grid(case.case_id, path, shape, header_image.affine, geometry, what)
    except CaseError as error:
        problems.append(error)
    except Exception as error:  # nibabel raises several types for unreadable headers
        problems.append(CaseError(case.case_id, f"not a readable NIfTI file ({error})", path))
    if read_voxels and not problems:
        try:
            load_case(case)
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
