"""``bratsx infer INPUT --prepare``: raw DICOM studies prepared, segmented and written back on each native grid."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("SimpleITK")
pytest.importorskip("pydicom")
pytest.importorskip("highdicom")
pytest.importorskip("nilearn")

from rawscans import write_study
from typer.testing import CliRunner

from bratsx.cli import app
from bratsx.labels import Modality

runner = CliRunner()


@pytest.fixture(scope="module")
def inferred(tmp_path_factory, tiny_onnx):
    """Two DICOM studies, one without T2, through ``bratsx infer --prepare`` with the tiny model."""
    root = tmp_path_factory.mktemp("raw")
    write_study(root / "good", patient_id="GOOD")
    write_study(root / "bad", patient_id="BAD", seed=1, extras=False,
                sequences=(Modality.FLAIR, Modality.T1, Modality.T1CE))
    before = sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*"))
    out = tmp_path_factory.mktemp("out") / "predictions"
    result = runner.invoke(app, ["infer", str(root), "--out", str(out), "--prepare", "--skull-strip", "none",
                                 "--model", str(tiny_onnx), "--backend", "ort", "--window", "box"])
    return root, before, out, result


def test_a_case_that_cannot_be_prepared_fails_alone_and_the_exit_code_says_so(inferred):
    root, before, out, result = inferred
    assert result.exit_code == 1, result.output
    assert "case BAD_20260101: no T2 found" in result.output
    assert sorted(p.name for p in (out / "prepared").iterdir()) == ["GOOD_20260101"]
    assert not any("BAD" in p.name for p in out.iterdir())
    assert sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*")) == before  # inputs untouched


def test_the_prepared_case_is_segmented_on_the_atlas_and_written_back_on_every_native_grid(inferred):
    _, _, out, result = inferred
    atlas_seg = nib.load(out / "GOOD_20260101.nii.gz")
    atlas_image = nib.load(out / "prepared" / "GOOD_20260101" / "GOOD_20260101_t1ce.nii.gz")
    assert atlas_seg.shape == atlas_image.shape and np.allclose(atlas_seg.affine, atlas_image.affine)
    record = json.loads((out / "prepared" / "GOOD_20260101" / "prepare" / "prepare.json").read_text())
    native = out / "native"
    for name, info in record["sequences"].items():
        written = nib.load(native / f"GOOD_20260101_{name}_native_seg.nii.gz")
        assert list(written.shape) == list(info["geometry"]["size"])
    assert (native / "GOOD_20260101_seg.dcm").is_file()  # DICOM input: a DICOM-SEG on the reference series
    assert "GOOD_20260101: native segmentations in" in result.output
