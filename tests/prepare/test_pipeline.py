"""``bratsx prepare`` end to end on synthetic DICOM, and the segmentation back on each native grid and as DICOM-SEG."""

from __future__ import annotations

import json

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")
pytest.importorskip("pydicom")
pytest.importorskip("nilearn")

from rawscans import write_study
from typer.testing import CliRunner

from bratsx.cases import discover_cases
from bratsx.cli import app
from bratsx.labels import MODALITY_ORDER, LabelConvention, Modality, convert_labels
from bratsx.prepare import segmentation_to_native
from bratsx.prepare.atlas import BRATS_SIZE

runner = CliRunner()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Two studies through the CLI: one complete (with a localizer, a 2D and a non-MR series), one without T2."""
    root = tmp_path_factory.mktemp("raw")
    study = write_study(root / "good", patient_id="GOOD")
    write_study(root / "bad", patient_id="BAD", seed=1, extras=False,
                sequences=(Modality.FLAIR, Modality.T1, Modality.T1CE))
    out = tmp_path_factory.mktemp("prepared")
    result = runner.invoke(app, ["prepare", str(root), str(out), "--skull-strip", "none"])
    return study, out, result


def test_failed_case_is_one_line_and_others_finish(prepared):
    _, out, result = prepared
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "case BAD_20260101: no T2 found" in errors[0]
    assert "1 of 2 case(s) prepared" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["GOOD_20260101"]  # nothing written for the failed case


def test_prepared_case_is_a_brats_case_on_the_atlas_grid(prepared):
    _, out, _ = prepared
    [case] = discover_cases(out)
    assert case.case_id == "GOOD_20260101"
    for sequence in MODALITY_ORDER:
        image = sitk.ReadImage(str(out / case.case_id / f"{case.case_id}_{sequence.value}.nii.gz"))
        assert image.GetSize() == BRATS_SIZE and image.GetSpacing() == (1.0, 1.0, 1.0)
    record = json.loads((out / case.case_id / "prepare" / "prepare.json").read_text())
    assert set(record["sequences"]) == {m.value for m in MODALITY_ORDER}
    assert {r["series"]: r["excluded"] for r in record["identification"] if r["excluded"]} == {
        "#1 3-plane localizer": "a localizer/scout", "#20 T2 single slice": "a 2D series (1 slice)",
        "#30 dose report": "not MR (modality OT)"}
    for quality in record["registration"].values():
        assert quality["mi_after"] >= quality["mi_before"]
    for name in ("flair_to_t1ce.tfm", "t1_to_t1ce.tfm", "t2_to_t1ce.tfm", "reference_to_atlas.tfm"):
        assert (out / case.case_id / "prepare" / "transforms" / name).is_file()
    assert set(record["seconds"]) == {"identify", "read", "co-register", "skull-strip", "atlas", "resample", "write"}
    assert record["sequences"]["t1ce"]["dicom"]["SeriesInstanceUID"]
    page = (out / case.case_id / "prepare" / "report.html").read_text()
    assert "#30 dose report" in page and "excluded: not MR (modality OT)" in page
    assert page.count("data:image/png;base64,") == len(record["pictures"]) == 5


@pytest.fixture(scope="module")
def back_to_native(prepared, tmp_path_factory):
    """The known labels moved to the atlas through the saved transforms, then back through their inverses."""
    study, out, _ = prepared
    folder = out / "GOOD_20260101"
    record = json.loads((folder / "prepare" / "prepare.json").read_text())
    labels = convert_labels(study.labels, LabelConvention.BRATS2023, LabelConvention.BRATS2020)
    native = _native_image(labels, record["sequences"]["t1ce"]["geometry"])
    to_atlas = sitk.ReadTransform(str(folder / "prepare" / "transforms" / "reference_to_atlas.tfm"))
    atlas_grid = sitk.ReadImage(str(folder / "GOOD_20260101_t1ce.nii.gz"))
    on_atlas = sitk.Resample(native, atlas_grid, to_atlas, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    segmentation = tmp_path_factory.mktemp("seg") / "GOOD_20260101.nii.gz"
    sitk.WriteImage(on_atlas, str(segmentation))
    target = tmp_path_factory.mktemp("native")
    return study, labels, segmentation_to_native(folder, segmentation, target)


def _native_image(labels: np.ndarray, geometry: dict):
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0)).astype(np.uint8))
    image.SetSpacing(geometry["spacing"])
    image.SetOrigin(geometry["origin"])
    image.SetDirection(geometry["direction"])
    return image


def test_labels_come_back_on_every_native_grid(back_to_native):
    study, labels, result = back_to_native
    assert set(result.segmentations) == {m.value for m in MODALITY_ORDER}
    for name, path in result.segmentations.items():
        image = sitk.ReadImage(str(path))
        assert image.GetSize() == study.labels.shape  # (x, y, z), as written
        assert image.GetSpacing() == pytest.approx(study.spacing)
        assert image.GetOrigin() == pytest.approx((-30.0, -40.0, -20.0))
    back = sitk.GetArrayFromImage(sitk.ReadImage(str(result.segmentations["t1ce"]))).transpose(2, 1, 0)
    for values in ((1, 2, 4), (1, 4), (4,)):  # WT, TC, ET
        a, b = np.isin(labels, values), np.isin(back, values)
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.9


def test_native_volumes_in_ml(back_to_native):
    study, labels, result = back_to_native
    voxel_ml = float(np.prod(study.spacing)) / 1000
    expected = np.count_nonzero(labels) * voxel_ml
    assert result.volumes_ml["t1ce"]["region WT"] == pytest.approx(expected, rel=0.1)


def test_dicom_seg_reads_back_with_references(back_to_native):
    import highdicom as hd
    import pydicom

    study, labels, result = back_to_native
    dataset = pydicom.dcmread(result.dicom_seg)
    assert dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
    assert dataset.StudyInstanceUID == study.study_uid
    assert dataset.ReferencedSeriesSequence[0].SeriesInstanceUID == study.series_uids[Modality.T1CE]
    segmentation = hd.seg.segread(result.dicom_seg)
    assert [d.SegmentLabel for d in segmentation.SegmentSequence] == ["NCR", "ED", "ET"]
    assert segmentation.SegmentSequence[1].SegmentDescription == "Peritumoral edema"
    assert int(dataset.NumberOfFrames) == 3 * labels.shape[2]  # every slice, per segment
    source_uids = {uid for _, _, uid in segmentation.get_source_image_uids()}
    assert len(source_uids) == labels.shape[2]


def test_bad_studies_fail_alone_in_one_line_each(tmp_path):
    """A corrupt file, two T1ce candidates, and only non-MR/2D/localizer series: three errors, nothing written."""
    from rawscans import synthetic_volumes, write_series

    from bratsx.prepare import prepare_input

    write_study(tmp_path / "corrupt", patient_id="CORRUPT", extras=False)
    victim = sorted((tmp_path / "corrupt" / "series3").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:300])
    write_study(tmp_path / "twice", patient_id="TWICE", extras=False)
    volumes, _ = synthetic_volumes(0)
    study = next((tmp_path / "twice" / "series4").iterdir())
    import pydicom

    first = pydicom.dcmread(study, stop_before_pixels=True)
    write_series(tmp_path / "twice" / "again", volumes[Modality.T1CE][:, :, ::2], study_uid=first.StudyInstanceUID,
                 frame_uid=first.FrameOfReferenceUID, number=9, description="COR T1 POST", contrast="GADAVIST",
                 patient_id="TWICE")
    write_study(tmp_path / "extras", patient_id="EXTRAS", sequences=())
    out = tmp_path / "out"
    results = {r.case_id: r.error for r in prepare_input(tmp_path, out)}
    assert results["CORRUPT_20260101"].startswith("case CORRUPT_20260101, folder")
    assert "not a readable DICOM file" in results["CORRUPT_20260101"]
    assert "two candidates for T1CE: '#4 AX T1 SE' and '#9 COR T1 POST'" in results["TWICE_20260101"]
    assert "no FLAIR found; no T1 found; no T1CE found; no T2 found (found: no usable series)" in results[
        "EXTRAS_20260101"]
    assert all("\n" not in error for error in results.values())
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("arguments, message", [
    (["--map", "scan_1.nii.gz"], "--map 'scan_1.nii.gz': expected SERIES_OR_FILE=SEQUENCE"),
    ([], "case raw: no FLAIR found; no T1 found; no T1CE found; no T2 found"),
])
def test_cli_one_line_errors(tmp_path, arguments, message):
    """Uninformative names stop the case and point to --map; a malformed --map is refused before any work."""
    import nibabel as nib

    raw = tmp_path / "raw"
    raw.mkdir()
    for index in range(4):
        nib.save(nib.Nifti1Image(np.ones((20, 20, 10), np.int16), np.eye(4)), raw / f"scan_{index}.nii.gz")
    result = runner.invoke(app, ["prepare", str(raw), str(tmp_path / "out"), *arguments])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert not any((tmp_path / "out").glob("*/*"))  # no case folder, no file
