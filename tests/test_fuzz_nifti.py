"""Fuzzing the NIfTI reader: whatever a case's headers and bytes hold, loading either succeeds with a finite,
correctly shaped float32 image or raises one line of :class:`~bratsx.errors.CaseError`; never anything else.

Hypothesis mutates one file of a small valid case at a time: header fields (dimensions, voxel sizes,
sform/qform, data type, data offset, scaling, header size, magic), truncation, flipped bytes (in the
decompressed or the compressed bytes) and compression. Deterministic (derandomized, no example
database) and bounded (:data:`EXAMPLES` examples).
"""

from __future__ import annotations

import gzip
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bratsx.cases import discover_cases
from bratsx.errors import CaseError
from bratsx.imageio import inspect_case, load_case

hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

EXAMPLES = 200
CASE_ID = "fuzz_case"
SHAPE = (6, 7, 5)
FILES = ("flair", "t1", "t1c", "t2", "seg")

FLOATS = st.one_of(st.sampled_from([0.0, -1.0, 1.0, 2.5, np.nan, np.inf, -np.inf, 1e38, 1e-38, 1e30]),
                   st.floats(width=32))
INT16 = st.integers(-(2**15), 2**15 - 1)
HEADER_FIELDS = {
    "dim": st.lists(st.one_of(st.integers(-2, 9), INT16), min_size=8, max_size=8),
    "pixdim": st.lists(FLOATS, min_size=8, max_size=8),
    "srow_x": st.lists(FLOATS, min_size=4, max_size=4),
    "srow_y": st.lists(FLOATS, min_size=4, max_size=4),
    "srow_z": st.lists(FLOATS, min_size=4, max_size=4),
    "sform_code": st.integers(-1, 5),
    "qform_code": st.integers(-1, 5),
    "quatern_b": FLOATS,
    "quatern_c": FLOATS,
    "quatern_d": FLOATS,
    "qoffset_x": FLOATS,
    "datatype": st.one_of(st.sampled_from([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792,
                                           2048, 2304]), INT16),
    "bitpix": INT16,
    "vox_offset": st.one_of(st.sampled_from([0.0, 351.0, 352.0, 353.0, 368.0, -352.0, 1e9, np.nan]), FLOATS),
    "scl_slope": FLOATS,
    "scl_inter": FLOATS,
    "sizeof_hdr": st.one_of(st.sampled_from([348, 540, 0, 1543569408]), st.integers(-(2**31), 2**31 - 1)),
    "magic": st.sampled_from([b"n+1", b"ni1", b"n+2", b"", b"xyz"]),
}
POSITIONS = st.one_of(st.integers(0, 351), st.integers(0, 2**20))  # the header's bytes, or anywhere


@dataclass(frozen=True)
class Mutation:
    """What to do to one file of the case."""

    file: str
    fields: dict
    flips: tuple[tuple[int, int], ...]  # (position, xor mask), positions taken modulo the length
    cut: int | None  # truncate at this position (modulo the length)
    in_compressed: bool  # flips and cut apply to the gzip bytes instead of the NIfTI bytes
    gzipped: bool  # write gzip (else the raw NIfTI bytes, under the same .nii.gz name)


@st.composite
def mutations(draw) -> Mutation:
    names = draw(st.lists(st.sampled_from(sorted(HEADER_FIELDS)), max_size=3, unique=True))
    return Mutation(
        file=draw(st.sampled_from(FILES)),
        fields={name: draw(HEADER_FIELDS[name]) for name in names},
        flips=tuple(draw(st.lists(st.tuples(POSITIONS, st.integers(1, 255)), max_size=3))),
        cut=draw(st.none() | POSITIONS),
        in_compressed=draw(st.booleans()),
        gzipped=draw(st.booleans()),
    )


def _damage(data: bytes, mutation: Mutation) -> bytes:
    damaged = bytearray(data)
    for position, mask in mutation.flips:
        if damaged:
            damaged[position % len(damaged)] ^= mask
    if mutation.cut is not None and damaged:
        del damaged[mutation.cut % len(damaged):]
    return bytes(damaged)


def _case_files() -> dict[str, bytes]:
    """The valid case: four int16 volumes and a BraTS 2018-2021 label map, as NIfTI bytes."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    volumes = {}
    for code, name in enumerate(FILES[:4], start=1):
        volume = np.zeros(SHAPE, np.int16)
        volume[1:-1, 1:-1, 1:-1] = 100 * code + np.arange(4 * 5 * 3).reshape(4, 5, 3)
        volumes[name] = nib.Nifti1Image(volume, affine).to_bytes()
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:4, 2:4, 1:3] = [[[1, 2], [4, 1]], [[2, 4], [1, 2]]]
    volumes["seg"] = nib.Nifti1Image(labels, affine).to_bytes()
    return volumes


CASE_FILES = _case_files()


def _write_case(folder: Path, mutation: Mutation) -> None:
    folder.mkdir()
    for name, data in CASE_FILES.items():
        if name == mutation.file:
            header = nib.Nifti1Header.from_fileobj(io.BytesIO(data), check=False)
            for field, value in mutation.fields.items():
                header[field] = value
            data = header.binaryblock + data[348:]
            if not mutation.in_compressed:
                data = _damage(data, mutation)
            if mutation.gzipped:
                data = gzip.compress(data, mtime=0)
            if mutation.in_compressed:
                data = _damage(data, mutation)
        else:
            data = gzip.compress(data, mtime=0)
        (folder / f"{name}.nii.gz").write_bytes(data)


def _assert_one_line(error: CaseError) -> None:
    assert isinstance(error, CaseError), repr(error)
    assert "\n" not in str(error) and str(error).startswith(f"case {CASE_ID}")


@hypothesis.settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.too_slow])
@hypothesis.given(mutations())
def test_any_mutated_case_loads_finite_or_fails_in_one_line(mutation):
    with tempfile.TemporaryDirectory() as scratch:
        _write_case(Path(scratch) / CASE_ID, mutation)
        [case] = discover_cases(scratch)
        try:
            loaded = load_case(case)
        except CaseError as error:
            _assert_one_line(error)
            failed = True
        else:
            failed = False
            geometry = loaded.geometry
            assert loaded.image.dtype == np.float32
            assert loaded.image.shape == (4, *geometry.canonical_shape)
            assert sorted(geometry.canonical_shape) == sorted(geometry.shape)
            assert np.isfinite(loaded.image).all()
            assert loaded.label.dtype == np.uint8 and loaded.label.shape == geometry.canonical_shape
        report = inspect_case(case, read_voxels=True)  # what ``bratsx cases --check`` does: never raises
        for problem in report.problems:
            _assert_one_line(problem)
        assert bool(report.problems) == failed  # the check and the load agree
