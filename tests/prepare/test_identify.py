"""Sequence identification: names and headers to FLAIR/T1/T1ce/T2 with evidence; no guessing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bratsx.errors import BratsxError
from bratsx.labels import Modality
from bratsx.prepare.identify import (
    IdentificationError,
    assign_sequences,
    identify_series,
    parse_sequence_map,
)
from bratsx.prepare.ingest import Series

FLAIR, T1, T1CE, T2 = Modality.FLAIR, Modality.T1, Modality.T1CE, Modality.T2


def nifti(name: str, slices: int = 26) -> Series:
    return Series(key=name, label=name, description=name, slices=slices, files=(Path(name),))


def dicom(description: str, te=None, tr=None, ti=None, contrast="", modality="MR", image_type=(), slices=30,
          number=1) -> Series:
    return Series(key=f"1.2.{number}", label=f"#{number} {description}", description=description,
                  modality=modality, image_type=image_type, echo_time=te, repetition_time=tr, inversion_time=ti,
                  contrast_agent=contrast, slices=slices, files=(Path(f"s{number}/1.dcm"),), number=number)


@pytest.mark.parametrize("name, expected", [
    # the raw TCGA case's file names (series description + dcm2niix-style suffix)
    ("MRHR_FLAIR_AX_OtherEXampleTCIA_TCGA-FG-6692_Si_TCGA-FG-6692_MRHR_FLAIR_AX_SE_IR_5_tir2d1_21_fla.nii.gz", FLAIR),
    ("T1_AX_OtherEXampleTCIA_TCGA-FG-6692_Si_TCGA-FG-6692_T1_AX_SE_10_se2d1_t1.nii.gz", T1),
    ("MRHR_T1_AX_POST_GAD_OtherEXampleTCIA_TCGA-FG-6692_Si_TCGA-FG-6692_MRHR_T1_AX_POST_GAD_SE_13_se2d1r_t1c.nii.gz",
     T1CE),
    ("MRHR_T2_AX_OtherEXampleTCIA_TCGA-FG-6692_Si_TCGA-FG-6692_MRHR_T2_AX_SE_2_tse2d1_11_t2.nii.gz", T2),
    # BraTS 2023+ names, BraTS 2018 names, plain names
    ("BraTS-GLI-00001-000-t2f.nii.gz", FLAIR), ("BraTS-GLI-00001-000-t1n.nii.gz", T1),
    ("BraTS-GLI-00001-000-t1c.nii.gz", T1CE), ("BraTS-GLI-00001-000-t2w.nii.gz", T2),
    ("Brats18_2013_20_1_flair.nii.gz", FLAIR), ("Brats18_2013_20_1_t1ce.nii.gz", T1CE),
    ("t1gd.nii", T1CE), ("T2 FLAIR.nii.gz", FLAIR), ("t1_pre.nii.gz", T1), ("MPRAGE+C.nii.gz", T1CE),
])
def test_file_names(name, expected):
    verdict = identify_series(nifti(name))
    assert verdict.sequence is expected and verdict.confidence >= 0.5 and verdict.evidence


@pytest.mark.parametrize("series, expected, evidence", [
    (dicom("Ax", te=120, tr=9000, ti=2500), FLAIR, "TI 2500 ms (fluid suppressed)"),
    (dicom("Ax", te=100, tr=4000), T2, "TE 100 ms, TR 4000 ms (T2-weighted)"),
    (dicom("Ax", te=12, tr=500), T1, "no contrast agent recorded"),
    (dicom("Ax", te=12, tr=500, contrast="GADAVIST"), T1CE, "contrast agent 'GADAVIST'"),
    (dicom("Sag 3D", te=3, tr=2300, ti=900, contrast="Dotarem"), T1CE, "TI 900 ms, TE 3 ms (MPRAGE-like)"),
])
def test_headers_without_names(series, expected, evidence):
    verdict = identify_series(series)
    assert verdict.sequence is expected
    assert evidence in verdict.evidence


@pytest.mark.parametrize("series, reason", [
    (dicom("dose report", modality="SR"), "not MR (modality SR)"),
    (dicom("AAHead_Scout"), "a localizer/scout"),
    (dicom("whatever", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")), "a localizer/scout"),
    (dicom("AX T2", te=100, tr=4000, slices=1), "a 2D series (1 slice)"),
    (dicom("AX DWI b1000", te=90, tr=5000), "not a structural sequence (dwi, b1000)"),
    (dicom("ADC map", image_type=("DERIVED", "PRIMARY", "ADC")), "not a structural sequence (adc)"),
])
def test_exclusions_say_why(series, reason):
    verdict = identify_series(series)
    assert verdict.sequence is None and verdict.excluded == reason


def test_no_evidence_is_no_guess():
    verdict = identify_series(nifti("scan_0003.nii.gz"))
    assert verdict.sequence is None and verdict.evidence == ("no name or header evidence",)


def test_two_candidates_stop_the_case_naming_both():
    series = [dicom("AX FLAIR", number=2), dicom("AX T1", te=10, tr=450, number=3),
              dicom("AX T1 POST", te=10, tr=450, number=4), dicom("COR T1 POST", te=10, tr=450, number=5),
              dicom("AX T2", te=100, tr=4000, number=6)]
    with pytest.raises(IdentificationError) as caught:
        assign_sequences("c1", series)
    message = str(caught.value)
    assert "two candidates for T1CE: '#4 AX T1 POST' and '#5 COR T1 POST'" in message and "--map" in message
    assert len(caught.value.verdicts) == 5


def test_map_resolves_two_candidates_and_overrides_evidence():
    series = [dicom("AX FLAIR", number=2), dicom("AX T1", te=10, tr=450, number=3),
              dicom("AX T1 POST", te=10, tr=450, number=4), dicom("COR T1 POST", te=10, tr=450, number=5),
              dicom("AX T2", te=100, tr=4000, number=6)]
    chosen, verdicts = assign_sequences("c1", series, parse_sequence_map(["5=t1ce"]))
    assert chosen[T1CE].number == 5
    assert {m: s.number for m, s in chosen.items()} == {FLAIR: 2, T1: 3, T1CE: 5, T2: 6}
    assert next(v for v in verdicts if v.series.number == 5).evidence[0] == "--map"


@pytest.mark.parametrize("entries, expected", [
    (["a.nii.gz=flair,b.nii.gz=T1C"], {"a.nii.gz": FLAIR, "b.nii.gz": T1CE}),
    (["7=t2", "1.2.3=t1"], {"7": T2, "1.2.3": T1}),
])
def test_parse_map(entries, expected):
    assert parse_sequence_map(entries) == expected


@pytest.mark.parametrize("entry", ["a.nii.gz", "a=dwi", "=t1"])
def test_parse_map_rejects_in_one_line(entry):
    with pytest.raises(BratsxError, match="expected SERIES_OR_FILE=SEQUENCE"):
        parse_sequence_map([entry])
