"""A corpus of hostile and odd inputs: one small case per class, each written by a function.

Every class says what bratsx must do with it: load it (odd but valid), refuse it with one
:class:`~bratsx.errors.CaseError` line naming the case and the file, segment it but refuse its
reference (:class:`~bratsx.errors.LabelError`), skip it and say why, or refuse the whole directory at
discovery with one :class:`~bratsx.errors.BratsxError` line. ``tests/test_hostile_inputs.py`` runs
every class through ``load_case``, ``discover_cases`` and ``bratsx cases --check``;
:func:`write_batch` writes one directory mixing good and bad cases, for whole-batch commands.

Tests run as root, which reads any folder whatever its mode; the one class that needs a folder
that cannot be listed names it in :attr:`Hostile.unlisted`, and the test makes its listing fail.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import nibabel as nib
import numpy as np
from casefiles import SMALL_SHAPE, label_volume, modality_volume, save, write_folder_case, write_msd_case

from bratsx.cases import Layout
from bratsx.labels import Modality
from bratsx.synth import brats_affine

#: Id of the case each class writes (unless it is about the id itself).
CASE = "case_001"


class Expect(str, Enum):
    """What bratsx must do with a class."""

    LOADS = "loads"  # odd but valid: load_case succeeds, bratsx cases --check exits 0
    CASE_ERROR = "case error"  # load_case raises one CaseError line naming the case and the culprit
    LABEL_ERROR = "label error"  # the images load; the reference raises a LabelError naming it
    SKIPPED = "skipped"  # discovery passes the folder over and says why
    DISCOVERY_ERROR = "discovery error"  # discover_cases refuses the directory, naming the culprit


@dataclass(frozen=True)
class Hostile:
    """One class of the corpus.

    Attributes:
        name: the class, e.g. ``truncated_gzip`` (the name of the function that writes it).
        expect: what bratsx must do with it.
        case_id: the case it is about.
        culprit: the name of the file or folder the message must name.
        message: a fragment the message must contain (for skipped classes, the reason).
        write: writes the class into an empty folder.
        unlisted: a folder, relative to that one, whose listing must fail (permission denied).
    """

    name: str
    expect: Expect
    case_id: str
    culprit: str
    message: str
    write: Callable[[Path], None]
    unlisted: str | None = None


CORPUS: dict[str, Hostile] = {}


def _hostile(expect: Expect, culprit: str, message: str, case_id: str = CASE, unlisted: str | None = None):
    """Register the decorated writer as a class; ``{id}`` in ``culprit`` stands for the case id."""

    def register(write: Callable[[Path], None]) -> Callable[[Path], None]:
        CORPUS[write.__name__] = Hostile(write.__name__, expect, case_id, culprit.format(id=case_id), message,
                                         write, unlisted)
        return write

    return register


def _patched(name: str, expect: Expect, suffix: str, message: str, **fields) -> None:
    """Register a class: a valid case with raw header fields of its ``<id>_<suffix>`` file set."""

    def write(root: Path) -> None:
        _case(root)
        patch_header(_file(root, suffix), **fields)

    write.__name__ = name
    _hostile(expect, f"{{id}}_{suffix}.nii.gz", message)(write)


def _replaced(name: str, expect: Expect, suffix: str, message: str, volume: np.ndarray,
              affine: np.ndarray | None = None) -> None:
    """Register a class: a valid case whose ``<id>_<suffix>`` file holds ``volume`` instead."""

    def write(root: Path) -> None:
        _case(root)
        save(volume, _file(root, suffix), affine)

    write.__name__ = name
    _hostile(expect, f"{{id}}_{suffix}.nii.gz", message)(write)


def _damaged(name: str, expect: Expect, suffix: str, message: str, damage: Callable[[bytes], bytes]) -> None:
    """Register a class: a valid case whose ``<id>_<suffix>`` file's bytes go through ``damage``."""

    def write(root: Path) -> None:
        _case(root)
        path = _file(root, suffix)
        path.write_bytes(damage(path.read_bytes()))

    write.__name__ = name
    _hostile(expect, f"{{id}}_{suffix}.nii.gz", message)(write)


def _linked(name: str, expect: Expect, suffix: str, message: str, target: str) -> None:
    """Register a class: a valid case whose ``<id>_<suffix>`` file is a symbolic link to ``target``."""

    def write(root: Path) -> None:
        _case(root)
        _file(root, suffix).unlink()
        _file(root, suffix).symlink_to(target.format(name=_file(root, suffix).name))

    write.__name__ = name
    _hostile(expect, f"{{id}}_{suffix}.nii.gz", message)(write)


def write_batch(root: Path) -> dict[str, Hostile]:
    """Write one directory mixing good and bad cases: every class about one case folder, renamed after the class.

    For running a whole batch (``bratsx infer``, ``bratsx cases``): one bad case must never hide another.

    Returns:
        The classes written, by case id (= class name).
    """
    written = {}
    for name, hostile in CORPUS.items():
        if hostile.case_id != CASE or hostile.expect not in (Expect.LOADS, Expect.CASE_ERROR, Expect.LABEL_ERROR):
            continue
        scratch = root / f".{name}"
        scratch.mkdir(parents=True)
        hostile.write(scratch)
        (scratch / CASE).rename(root / name)
        scratch.rmdir()
        written[name] = hostile
    return written


# --- helpers ---------------------------------------------------------------------------------------


def _case(root: Path, label_values: tuple[int, ...] | None = (1, 2, 4), case_id: str = CASE) -> Path:
    return write_folder_case(root, Layout.BRATS2020, case_id, label_values=label_values)


def _file(root: Path, suffix: str, case_id: str = CASE) -> Path:
    return root / case_id / f"{case_id}_{suffix}.nii.gz"


def patch_header(path: Path, **fields) -> None:
    """Set raw header fields of a NIfTI-1 file, bypassing every check nibabel makes on writing."""
    raw = gzip.decompress(path.read_bytes())
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(raw), check=False)
    for name, value in fields.items():
        header[name] = value
    path.write_bytes(gzip.compress(header.binaryblock + raw[348:]))


# --- damaged bytes ---------------------------------------------------------------------------------


_damaged("truncated_gzip", Expect.CASE_ERROR, "t1", "corrupt or truncated gzip data",
         lambda data: data[: len(data) // 2])
_damaged("corrupt_gzip", Expect.CASE_ERROR, "flair", "corrupt or truncated gzip data",
         lambda data: b"\x1f\x8b" + b"garbage" * 20)
_damaged("zero_byte_file", Expect.CASE_ERROR, "t1", "empty file", lambda data: b"")
_damaged("wrong_magic", Expect.CASE_ERROR, "t2", "not a NIfTI file", lambda data: b"PK\x03\x04" + bytes(range(256)) * 4)
_damaged("text_in_gzip", Expect.CASE_ERROR, "t2", "not a NIfTI file",
         lambda data: gzip.compress(b"this is not a NIfTI header\n" * 30))
_damaged("gzip_of_nothing", Expect.CASE_ERROR, "t2", "not a NIfTI file", lambda data: gzip.compress(b""))
_damaged("truncated_voxels", Expect.CASE_ERROR, "t2", "truncated: ",
         lambda data: gzip.compress(gzip.decompress(data)[:-100]))


_patched("unknown_datatype", Expect.CASE_ERROR, "t1ce", "not a readable NIfTI header", datatype=999)
_patched("vox_offset_inside_header", Expect.CASE_ERROR, "t1", "not a readable NIfTI header", vox_offset=100)
_patched("nan_vox_offset", Expect.CASE_ERROR, "t1", "vox_offset nan does not point past", vox_offset=np.nan)
_patched("vox_offset_past_the_end", Expect.CASE_ERROR, "t1", "truncated: ", vox_offset=1 << 24)
_replaced("complex_voxels", Expect.CASE_ERROR, "t1ce", "unsupported voxel type",
          modality_volume(Modality.T1CE).astype(np.complex64))
_replaced("rgb_voxels", Expect.CASE_ERROR, "t1ce", "unsupported voxel type",
          np.ones(SMALL_SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")]))


# --- dimensions ------------------------------------------------------------------------------------


_patched("negative_dims", Expect.CASE_ERROR, "flair", "negative dimension", dim=[3, -20, 24, 16, 1, 1, 1, 1])
_patched("zero_dim", Expect.CASE_ERROR, "flair", "empty image", dim=[3, 20, 0, 16, 1, 1, 1, 1])
_patched("bad_dimension_count", Expect.CASE_ERROR, "flair", "header dim[0] is 9", dim=[9, 20, 24, 16, 1, 1, 1, 1])
_replaced("four_d_where_3d_expected", Expect.CASE_ERROR, "flair", "expected a 3D image",
          np.ones((*SMALL_SHAPE, 2), dtype=np.int16))
_replaced("mismatched_shapes", Expect.CASE_ERROR, "t1ce", "differs from FLAIR's",
          modality_volume(Modality.T1CE, (20, 24, 15)))


@_hostile(Expect.CASE_ERROR, "{id}_flair.nii.gz", "truncated: ")
def huge_dims(root: Path) -> None:
    _case(root, label_values=None)
    for suffix in ("flair", "t1", "t1ce", "t2"):  # one grid, as far as the headers say
        patch_header(_file(root, suffix), dim=[3, 32767, 32767, 32767, 1, 1, 1, 1])


@_hostile(Expect.CASE_ERROR, "BRATS_001.nii.gz", "expected a 4D image with 4 channels", case_id="BRATS_001")
def msd_three_channels(root: Path) -> None:
    write_msd_case(root, "BRATS_001")
    save(np.ones((*SMALL_SHAPE, 3), dtype=np.int16), root / "imagesTr" / "BRATS_001.nii.gz")


# --- voxel values ----------------------------------------------------------------------------------


_NAN_T1 = modality_volume(Modality.T1).astype(np.float32)
_NAN_T1[5, 5, 5] = np.nan
_HUGE_T1 = modality_volume(Modality.T1).astype(np.float64)
_HUGE_T1[5, 5, 5] = 1e300
_replaced("nan_voxels", Expect.CASE_ERROR, "t1", "NaN or infinite voxels", _NAN_T1)
_replaced("float64_beyond_float32", Expect.CASE_ERROR, "t1", "NaN or infinite voxels", _HUGE_T1)
_patched("scaled_to_infinity", Expect.CASE_ERROR, "t2", "NaN or infinite voxels after the file's scaling",
         scl_slope=1e38)
_replaced("all_zero_modality", Expect.CASE_ERROR, "t1ce", "all zeros", np.zeros(SMALL_SHAPE, dtype=np.int16))


# --- geometry --------------------------------------------------------------------------------------


_SHIFTED = brats_affine(SMALL_SHAPE)
_SHIFTED[0, 3] += 0.5
_ZERO_SFORM = {"sform_code": 1, "srow_x": 0, "srow_y": 0, "srow_z": 0}
_NO_GEOMETRY = "no usable voxel-to-world geometry"
_replaced("mismatched_affines", Expect.CASE_ERROR, "t2", "affine differs from FLAIR's", modality_volume(Modality.T2),
          _SHIFTED)
_patched("zero_sform", Expect.CASE_ERROR, "flair", _NO_GEOMETRY, qform_code=0, **_ZERO_SFORM)
_patched("nan_sform", Expect.CASE_ERROR, "flair", _NO_GEOMETRY, sform_code=1, qform_code=0, srow_x=[np.nan, 0, 0, 0])
_patched("nan_pixdim_qform_only", Expect.CASE_ERROR, "t1", _NO_GEOMETRY, sform_code=0, qform_code=1,
         pixdim=[1, np.nan, 1, 1, 1, 1, 1, 1])
_patched("sform_and_qform_unusable", Expect.CASE_ERROR, "t1", _NO_GEOMETRY, qform_code=1,
         pixdim=[1, np.inf, 1, 1, 1, 1, 1, 1], **_ZERO_SFORM)
_patched("no_codes_nan_pixdim", Expect.CASE_ERROR, "t1", _NO_GEOMETRY, sform_code=0, qform_code=0,
         pixdim=[1, 1, np.nan, 1, 1, 1, 1, 1])


@_hostile(Expect.LOADS, "", "")
def nan_pixdim_beside_a_valid_sform(root: Path) -> None:
    _case(root)
    for suffix in ("flair", "t1", "t1ce", "t2", "seg"):
        patch_header(_file(root, suffix), pixdim=[1, np.nan, np.nan, np.nan, 1, 1, 1, 1])


@_hostile(Expect.LOADS, "", "")
def oblique_ras_case(root: Path) -> None:
    affine = np.array([[0.98, -0.17, 0, 10], [0.17, 0.98, 0, -20], [0, 0, 1.2, 5], [0, 0, 0, 1]])
    folder = root / CASE
    folder.mkdir()
    for modality in Modality:
        save(modality_volume(modality), folder / f"{modality.value}.nii.gz", affine)


# --- files that are not files ----------------------------------------------------------------------


_linked("dangling_symlink", Expect.CASE_ERROR, "flair", "dangling symbolic link", "/nonexistent/flair.nii.gz")
_linked("symlink_loop", Expect.CASE_ERROR, "t1", "symbolic link loop", "{name}")


@_hostile(Expect.CASE_ERROR, "{id}_t2.nii.gz", "is a directory")
def directory_named_like_a_modality(root: Path) -> None:
    _case(root)
    _file(root, "t2").unlink()
    _file(root, "t2").mkdir()


@_hostile(Expect.CASE_ERROR, "{id}_t2.nii.gz", "not a regular file")
def fifo_named_like_a_modality(root: Path) -> None:
    _case(root)
    _file(root, "t2").unlink()
    os.mkfifo(_file(root, "t2"))


@_hostile(Expect.CASE_ERROR, "{id}", "missing T1CE image")
def missing_modality(root: Path) -> None:
    _case(root)
    _file(root, "t1ce").unlink()


@_hostile(Expect.CASE_ERROR, "{id}_t1.nii", "two files for T1")
def doubled_modality(root: Path) -> None:
    _case(root)
    save(modality_volume(Modality.T1), root / CASE / f"{CASE}_t1.nii")


@_hostile(Expect.CASE_ERROR, "unreadable_case", "cannot list the folder", case_id="unreadable_case",
          unlisted="unreadable_case")
def unreadable_folder(root: Path) -> None:
    _case(root, case_id="unreadable_case")
    (root / "unreadable_case").chmod(0)  # enough for a user other than root; the test simulates it for root


# --- names -----------------------------------------------------------------------------------------


@_hostile(Expect.LOADS, "", "", case_id="[bold red]x")
def markup_in_id(root: Path) -> None:
    _case(root, case_id="[bold red]x")


@_hostile(Expect.LOADS, "", "", case_id="case :thumbs_up: [i]x")
def emoji_code_in_id(root: Path) -> None:
    _case(root, case_id="case :thumbs_up: [i]x")


@_hostile(Expect.LOADS, "", "", case_id="two\nlines\x1b[31m")
def control_characters_in_id(root: Path) -> None:
    _case(root, case_id="two\nlines\x1b[31m")


@_hostile(Expect.LOADS, "", "", case_id="c" * 240)
def very_long_id(root: Path) -> None:
    folder = root / ("c" * 240)
    folder.mkdir()
    for modality in Modality:
        save(modality_volume(modality), folder / f"{modality.value}.nii.gz")


@_hostile(Expect.LOADS, "", "", case_id="Fall_ü_東京")
def non_ascii_id(root: Path) -> None:
    _case(root, case_id="Fall_ü_東京")


@_hostile(Expect.SKIPPED, ".hidden_case", "hidden folder")
def dot_folder(root: Path) -> None:
    _case(root, case_id=".hidden_case")
    _case(root, case_id="visible_case")


@_hostile(Expect.SKIPPED, "oddly_named", "no file named like")
def unrecognised_file_names(root: Path) -> None:
    folder = root / "oddly_named"
    folder.mkdir()
    for name in ("a", "b", "c", "d"):
        save(modality_volume(Modality.T1), folder / f"{name}.nii.gz")
    _case(root, case_id="visible_case")


@_hostile(Expect.SKIPPED, "notes", "no NIfTI file")
def folder_without_images(root: Path) -> None:
    (root / "notes").mkdir()
    (root / "notes" / "README.txt").write_text("not a case")
    _case(root, case_id="visible_case")


@_hostile(Expect.DISCOVERY_ERROR, "imagesTs", "found twice", case_id="BRATS_001")
def msd_id_in_train_and_test(root: Path) -> None:
    write_msd_case(root, "BRATS_001")
    (root / "imagesTs").mkdir()
    (root / "imagesTs" / "BRATS_001.nii.gz").write_bytes((root / "imagesTr" / "BRATS_001.nii.gz").read_bytes())


@_hostile(Expect.DISCOVERY_ERROR, "Task01_copy", "found twice", case_id="BRATS_001")
def msd_id_in_two_datasets(root: Path) -> None:
    write_msd_case(root / "Task01_BrainTumour", "BRATS_001")
    write_msd_case(root / "Task01_copy", "BRATS_001")


@_hostile(Expect.DISCOVERY_ERROR, "Case_A", "differ only in letter case", case_id="case_a")
def ids_differing_in_case_only(root: Path) -> None:
    _case(root, case_id="Case_A")
    _case(root, case_id="case_a")


# --- odd but valid encodings -----------------------------------------------------------------------


@_hostile(Expect.LOADS, "", "")
def gzip_data_in_dot_nii(root: Path) -> None:
    _case(root)
    path = _file(root, "t1")
    path.rename(path.with_name(f"{CASE}_t1.nii"))


@_hostile(Expect.LOADS, "", "")
def raw_data_in_dot_nii_gz(root: Path) -> None:
    _case(root)
    path = _file(root, "t1")
    path.write_bytes(gzip.decompress(path.read_bytes()))


@_hostile(Expect.LOADS, "", "")
def nifti2_file(root: Path) -> None:
    _case(root)
    nib.save(nib.Nifti2Image(modality_volume(Modality.T2), brats_affine(SMALL_SHAPE)), _file(root, "t2"))


@_hostile(Expect.LOADS, "", "")
def big_endian_file(root: Path) -> None:
    _case(root)
    volume = modality_volume(Modality.T2).astype(">i2")
    image = nib.Nifti1Image(volume, brats_affine(SMALL_SHAPE), nib.Nifti1Header(endianness=">"))
    nib.save(image, _file(root, "t2"))


@_hostile(Expect.LOADS, "", "")
def junk_beside_the_images(root: Path) -> None:
    _case(root)
    (root / CASE / "README.txt").write_text("notes")
    (root / CASE / f"._{CASE}_t1.nii.gz").write_bytes(b"macOS resource fork")


@_hostile(Expect.LOADS, "", "")
def unlabelled_case(root: Path) -> None:
    _case(root, label_values=None)


# --- reference segmentations -----------------------------------------------------------------------


_damaged("corrupt_label", Expect.LABEL_ERROR, "seg", "corrupt or truncated gzip data",
         lambda data: data[: len(data) // 2])
_damaged("zero_byte_label", Expect.LABEL_ERROR, "seg", "empty file", lambda data: b"")
_linked("dangling_label_symlink", Expect.LABEL_ERROR, "seg", "dangling symbolic link", "/nonexistent/seg.nii.gz")


_replaced("bad_label_values", Expect.LABEL_ERROR, "seg", "label values [3] are not in the brats2020",
          label_volume((1, 2, 3)))
_replaced("label_on_another_grid", Expect.LABEL_ERROR, "seg", "differs from the images'",
          label_volume((1, 2, 4), (20, 24, 15)))
_patched("label_with_zero_sform", Expect.LABEL_ERROR, "seg", _NO_GEOMETRY, qform_code=0, **_ZERO_SFORM)


@_hostile(Expect.LABEL_ERROR, "{id}_seg.nii", "two files for the label")
def doubled_label(root: Path) -> None:
    _case(root)
    save(label_volume((1, 2, 4)), root / CASE / f"{CASE}_seg.nii")


@_hostile(Expect.LABEL_ERROR, "BRATS_001.nii.gz", "dangling symbolic link", case_id="BRATS_001")
def msd_label_dangling_symlink(root: Path) -> None:
    write_msd_case(root, "BRATS_001")
    (root / "labelsTr" / "BRATS_001.nii.gz").unlink()
    (root / "labelsTr" / "BRATS_001.nii.gz").symlink_to("/nonexistent/BRATS_001.nii.gz")
