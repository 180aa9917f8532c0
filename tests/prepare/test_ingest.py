"""DICOM and NIfTI ingest: studies become cases, series are read with their exact geometry, bad files stop one case."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("SimpleITK")
pytest.importorskip("pydicom")

from rawscans import write_study

from bratsx.errors import BratsxError, CaseError
from bratsx.labels import MODALITY_ORDER, Modality
from bratsx.prepare.identify import IdentificationError, assign_sequences
from bratsx.prepare.ingest import discover_raw_cases, read_series


@pytest.fixture(scope="module")
def two_studies(tmp_path_factory):
    """One complete study with a localizer, a single-slice and a non-MR series; a second one without T2."""
    root = tmp_path_factory.mktemp("dicom")
    complete = write_study(root / "patient1" / "study", patient_id="P1")
    partial = write_study(root / "patient2" / "deeper" / "study", seed=1, patient_id="P2", extras=False,
                          sequences=(Modality.FLAIR, Modality.T1, Modality.T1CE))
    return root, complete, partial


def test_one_case_per_study_whatever_the_nesting(two_studies):
    root, complete, partial = two_studies
    cases = {c.case_id: c for c in discover_raw_cases(root)}
    assert set(cases) == {"P1_20260101", "P2_20260101"}
    assert len(cases["P1_20260101"].series) == 7  # 4 sequences + localizer + single slice + non-MR
    assert len(cases["P2_20260101"].series) == 3
    assert all(not c.problems for c in cases.values())


def test_sequences_identified_from_headers_alone(two_studies):
    """The two T1 series share their description; only the contrast agent tag tells them apart."""
    root, complete, _ = two_studies
    case = next(c for c in discover_raw_cases(root) if c.case_id == "P1_20260101")
    chosen, verdicts = assign_sequences(case.case_id, case.series)
    assert {m: s.key for m, s in chosen.items()} == complete.series_uids
    excluded = {v.series.label: v.excluded for v in verdicts if v.excluded}
    assert excluded == {"#1 3-plane localizer": "a localizer/scout", "#20 T2 single slice": "a 2D series (1 slice)",
                        "#30 dose report": "not MR (modality OT)"}


def test_missing_sequence_stops_that_case_in_one_line(two_studies):
    root, _, _ = two_studies
    case = next(c for c in discover_raw_cases(root) if c.case_id == "P2_20260101")
    with pytest.raises(IdentificationError) as caught:
        assign_sequences(case.case_id, case.series)
    message = str(caught.value)
    assert "\n" not in message and "no T2 found" in message and "P2_20260101" in message
    assert "#2 AX FLAIR" in message  # what was found is named


@pytest.mark.parametrize("sequence", MODALITY_ORDER)
def test_series_geometry_round_trip(two_studies, sequence):
    """Voxels, spacing, origin and direction read back exactly as written."""
    root, complete, _ = two_studies
    case = next(c for c in discover_raw_cases(root) if c.case_id == "P1_20260101")
    series = next(s for s in case.series if s.key == complete.series_uids[sequence])
    image = read_series(series, case.case_id)
    import SimpleITK as sitk

    voxels = sitk.GetArrayFromImage(image).transpose(2, 1, 0)  # back to x, y, z
    np.testing.assert_array_equal(voxels, complete.volumes[sequence].astype(np.float32))
    assert image.GetSpacing() == pytest.approx(complete.spacing)
    assert image.GetOrigin() == pytest.approx((-30.0, -40.0, -20.0))
    assert image.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))


def test_corrupt_file_stops_its_study_only(tmp_path):
    write_study(tmp_path / "a", patient_id="GOOD", extras=False)
    write_study(tmp_path / "b", patient_id="BAD", extras=False, seed=1)
    victim = sorted((tmp_path / "b" / "series3").iterdir())[5]
    victim.write_bytes(victim.read_bytes()[:200])  # the preamble and part of the header: unreadable
    cases = {c.case_id: c for c in discover_raw_cases(tmp_path)}
    assert cases["GOOD_20260101"].problems == []
    assert cases["BAD_20260101"].problems == [f"file {victim.name}: not a readable DICOM file (corrupt or truncated "
                                              "header)"]


def test_dicomdir_is_not_a_corrupt_file(tmp_path):
    """A DICOMDIR (a valid DICOM file indexing a CD, outside any series) is passed over."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MediaStorageDirectoryStorage, generate_uid

    write_study(tmp_path / "cd", extras=False)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MediaStorageDirectoryStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    directory = FileDataset(str(tmp_path / "cd" / "DICOMDIR"), {}, file_meta=meta, preamble=b"\0" * 128)
    directory.FileSetID = "CD"
    pydicom.dcmwrite(directory.filename, directory, enforce_file_format=True)
    [case] = discover_raw_cases(tmp_path)
    assert case.problems == [] and len(case.series) == 4


def test_truncated_pixels_name_the_file(tmp_path):
    write_study(tmp_path, extras=False)
    case = discover_raw_cases(tmp_path)[0]
    series = case.series[0]
    victim = series.files[3]
    victim.write_bytes(victim.read_bytes()[:-3000])  # header intact, pixel data cut short
    with pytest.raises(CaseError) as caught:
        read_series(series, case.case_id)
    assert victim.name in str(caught.value) and "cannot be decoded" in str(caught.value)


@pytest.mark.parametrize("damage, message", [
    ("drop", "uneven slice spacing (2.00 to 4.00 mm): missing slices?"),
    ("copy", "2 slices share a position (several echoes or volumes in one series)"),
])
def test_broken_stacks_stop_in_one_line(tmp_path, damage, message):
    import shutil

    write_study(tmp_path, extras=False)
    folder = tmp_path / "series2"
    victim = sorted(folder.iterdir())[10]
    if damage == "drop":
        victim.unlink()
    else:
        shutil.copy(victim, folder / "echo2.dcm")
    case = discover_raw_cases(tmp_path)[0]
    with pytest.raises(CaseError) as caught:
        read_series(case.series[0], case.case_id)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_nifti_folder_is_one_case(tmp_path):
    import nibabel as nib

    for name in ("scan_fla.nii.gz", "scan_t1.nii.gz", "scan_t1c.nii.gz", "scan_t2.nii.gz"):
        nib.save(nib.Nifti1Image(np.ones((8, 8, 6), np.int16), np.eye(4)), tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    [case] = discover_raw_cases(tmp_path)
    chosen, _ = assign_sequences(case.case_id, case.series)
    assert {m: s.key for m, s in chosen.items()} == {
        Modality.FLAIR: "scan_fla.nii.gz", Modality.T1: "scan_t1.nii.gz", Modality.T1CE: "scan_t1c.nii.gz",
        Modality.T2: "scan_t2.nii.gz"}


def test_empty_input_is_one_error(tmp_path):
    with pytest.raises(BratsxError, match="no DICOM or NIfTI files"):
        discover_raw_cases(tmp_path)


def test_nifti_timing_from_dcm2niix_sidecar_and_header(tmp_path):
    """A dcm2niix BIDS sidecar gives times in seconds and the series description; the header's description TE=."""
    import json

    import nibabel as nib

    from bratsx.prepare.identify import identify_series

    plain = nib.Nifti1Image(np.ones((8, 8, 6), np.int16), np.eye(4))
    nib.save(plain, tmp_path / "scan_0003.nii.gz")
    (tmp_path / "scan_0003.json").write_text(json.dumps({
        "SeriesDescription": "AX DARK FLUID", "EchoTime": 0.12, "RepetitionTime": 9.0, "InversionTime": 2.5}))
    plain.header["descrip"] = b"TE=12;Time=231118.330"
    nib.save(plain, tmp_path / "scan_0004.nii.gz")
    [case] = discover_raw_cases(tmp_path)
    first, second = case.series
    assert (first.echo_time, first.repetition_time, first.inversion_time) == pytest.approx((120.0, 9000.0, 2500.0))
    assert identify_series(first).sequence is Modality.FLAIR
    assert "TI 2500 ms (fluid suppressed)" in identify_series(first).evidence
    assert second.echo_time == pytest.approx(12.0) and second.repetition_time is None
    assert identify_series(second).evidence == ("TE 12 ms (short: T1-like)", "no contrast agent recorded")
