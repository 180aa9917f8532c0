"""The web app's upload of raw scans: a zip of a DICOM study prepared, segmented and sent back on every native grid."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("SimpleITK")
pydicom = pytest.importorskip("pydicom")
pytest.importorskip("highdicom")
pytest.importorskip("nilearn")
sys.path.insert(0, str(Path(__file__).parents[1] / "prepare"))  # the synthetic DICOM writers of the prepare tests

import nibabel as nib
from rawscans import write_study
from serving import client, wait_for_job

from bratsx.labels import Modality


def _zipped(folder: Path, into: Path) -> Path:
    with zipfile.ZipFile(into, "w") as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return into


def _post(app, archive: Path, **form: str):
    return app.post("/api/jobs", files=[("files", (archive.name, archive.read_bytes()))],
                    data={"prepare": "true", "skull_strip": "none", **form})


@pytest.fixture(scope="module")
def study_zip(tmp_path_factory) -> tuple[Path, object]:
    """A zipped DICOM study (the four sequences, a localizer, a single-slice and a non-MR series)."""
    root = tmp_path_factory.mktemp("raw")
    study = write_study(root / "study", patient_id="WEB")
    return _zipped(root / "study", root / "study.zip"), study


@pytest.fixture(scope="module")
def served(study_zip, model_folder, tmp_path_factory):
    """The study through the app: the job's state and its downloads."""
    archive, _ = study_zip
    with client(model=model_folder, backend="ort", data_dir=tmp_path_factory.mktemp("data")) as app:
        response = _post(app, archive)
        assert response.status_code == 201, response.text
        assert response.json()["case_id"] == "WEB_20260101" and response.json()["prepare"] is True
        job = wait_for_job(app, response.json()["id"], timeout=300)
        downloads = {what: app.get(f"/api/jobs/{job['id']}/download/{what}")
                     for what in ("native", "dicom-seg", "segmentation")}
        seg_volume = app.get(f"/api/jobs/{job['id']}/volumes/seg")
        t1ce_volume = app.get(f"/api/jobs/{job['id']}/volumes/t1ce")
    return job, downloads, seg_volume, t1ce_volume


def test_a_zipped_dicom_study_is_prepared_segmented_and_mapped_back(served):
    job, _, seg_volume, t1ce_volume = served
    assert job["state"] == "done", job["error"]
    prepared = job["result"]["prepared"]
    assert prepared["native_grids"] == sorted(m.value for m in Modality) and prepared["dicom_seg"] is True
    assert set(prepared["sequences"]) == {m.value for m in Modality}
    assert all(q["mi_after"] >= q["mi_before"] for q in prepared["registration"].values())
    assert {"region WT", "region TC", "region ET"} <= set(prepared["native_volumes_ml"]["t1ce"])
    assert job["sequences"] == {"flair": None, "t1": None, "t1ce": None, "t2": None}  # the prepared case, viewable
    assert seg_volume.status_code == 200 and t1ce_volume.status_code == 200


def test_native_segmentations_come_as_one_zip_with_each_series_geometry(served, study_zip, tmp_path):
    job, downloads, _, _ = served
    _, study = study_zip
    native = downloads["native"]
    assert native.status_code == 200
    assert native.headers["content-disposition"] == 'attachment; filename="WEB_20260101_native.zip"'
    with zipfile.ZipFile(io.BytesIO(native.content)) as archive:
        names = sorted(archive.namelist())
        archive.extractall(tmp_path)
    assert names == sorted([*(f"WEB_20260101_{m.value}_native_seg.nii.gz" for m in Modality),
                            "WEB_20260101_native_volumes.json", "WEB_20260101_seg.dcm"])
    for sequence, volume in study.volumes.items():
        written = nib.load(tmp_path / f"WEB_20260101_{sequence.value}_native_seg.nii.gz")
        assert written.shape == volume.shape  # each series' own grid


def test_the_dicom_seg_download_references_the_reference_series(served, study_zip):
    _, downloads, _, _ = served
    _, study = study_zip
    response = downloads["dicom-seg"]
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="WEB_20260101_seg.dcm"'
    seg = pydicom.dcmread(io.BytesIO(response.content))
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == study.study_uid
    referenced = {item.SeriesInstanceUID for item in seg.ReferencedSeriesSequence}
    assert referenced == {study.series_uids[Modality.T1CE]}


def test_a_study_without_t2_is_refused_at_upload_in_one_line_and_leaves_no_folder(tmp_path, model_folder):
    write_study(tmp_path / "raw", patient_id="NOT2", extras=False,
                sequences=(Modality.FLAIR, Modality.T1, Modality.T1CE))
    archive = _zipped(tmp_path / "raw", tmp_path / "not2.zip")
    data = tmp_path / "data"
    with client(model=model_folder, backend="ort", data_dir=data) as app:
        response = _post(app, archive)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "case NOT2_20260101: no T2 found" in detail and "\n" not in detail
    assert list(data.iterdir()) == []


@pytest.mark.parametrize("form, expected", [
    ({"skull_strip": "deepbat"}, "deepbet"),  # the nearest name is suggested
])
def test_bad_prepare_options_are_one_line(study_zip, model_folder, form, expected):
    archive, _ = study_zip
    with client(model=model_folder, backend="ort") as app:
        response = _post(app, archive, **form)
    assert response.status_code == 422 and expected in response.json()["detail"]


def test_prepare_takes_one_zip_not_loose_files(tmp_path, model_folder):
    loose = tmp_path / "flair.nii.gz"
    nib.save(nib.Nifti1Image(__import__("numpy").zeros((4, 4, 4), "float32"), None), loose)
    with client(model=model_folder, backend="ort") as app:
        response = app.post("/api/jobs", files=[("files", (loose.name, loose.read_bytes()))], data={"prepare": "true"})
    assert response.status_code == 422 and "upload one .zip" in response.json()["detail"]


def test_nifti_files_at_a_zips_root_are_one_raw_case_named_after_them(tmp_path):
    import numpy as np

    from bratsx.serve.uploads import extract_zip, raw_case_from_zip

    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in ("pat7_flair", "pat7_t1", "pat7_t1c", "pat7_t2"):
            image = nib.Nifti1Image(np.zeros((8, 8, 8), "int16"), np.eye(4))
            zipped.writestr(f"{name}.nii", image.to_bytes())
        zipped.writestr("notes.txt", "kept: raw uploads keep every file")
    folder = tmp_path / "upload"
    folder.mkdir()
    extract_zip(archive, "upload.zip", folder, max_members=16, max_bytes=10**7, nifti_only=False)
    assert (folder / "notes.txt").is_file()
    assert raw_case_from_zip(folder, "upload.zip") == "pat7"
