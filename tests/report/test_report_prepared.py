"""Cases prepared from raw scans show their preparation in the batch QC report: sequences, registration quality,
the brain mask's checks, pictures and stage times, from ``prepare/prepare.json``, escaped."""

import base64
import json
import re

import pytest
from reportcases import write_case

from bratsx.report.build import build_batch_report

HOSTILE = '<img src=x onerror="alert(1)">'
#: A 1x1 PNG.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5"
                       "ErkJggg==")


def _record(case_id: str) -> dict:
    """A prepare record as the pipeline writes it (``bratsx.prepare.pipeline._record``)."""
    return {
        "version": 1, "case_id": case_id, "source": "/raw/x", "atlas": "sri24", "atlas_source": "MNI152 stand-in",
        "reference": "t1ce", "skull_strip": "deepbet", "brain_ml": 1412.3,
        "mask_check": {"cut_off_ml": 0.12, "bright_inside_ml": 61.0, "limit_ml": 1.0},
        "sequences": {}, "identification": [
            {"series": f"#5 {HOSTILE}", "sequence": "flair", "confidence": 0.9, "evidence": ["name: flair"],
             "excluded": "", "used": True},
            {"series": "#1 localizer", "sequence": None, "confidence": 0.0, "evidence": [],
             "excluded": "a localizer/scout", "used": False}],
        "registration": {"flair": {"mi_before": 0.4412, "mi_after": 0.8123},
                         "t1ce to atlas": {"mi_before": 0.0601, "mi_after": 0.1402}},
        "transforms": {}, "pictures": ["brain_mask.png", "../../secret.png"],
        "seconds": {"identify": 0.2, "co-register": 4.3, "skull-strip": 5.2}, "seconds_total": 9.7,
        "cpu_seconds": {"identify": 0.1, "co-register": 4.0, "skull-strip": 5.0}, "cpu_seconds_total": 9.1,
    }


@pytest.fixture
def page(tmp_path):
    """Two cases, the first prepared from raw scans (its record and mask picture), the report built."""
    for i, case_id in enumerate(("prep_001", "plain_002")):  # in the table: plain_002 (0), prep_001 (1)
        write_case(tmp_path / "cases", case_id, seed=i, prediction_dir=tmp_path / "pred")
    prepare = tmp_path / "cases" / "prep_001" / "prepare"
    prepare.mkdir()
    (prepare / "prepare.json").write_text(json.dumps(_record("prep_001")))
    (prepare / "brain_mask.png").write_bytes(PNG)
    (tmp_path / "secret.png").write_bytes(b"not for the report")
    result = build_batch_report(tmp_path / "pred", tmp_path / "cases")
    return result.html.read_text()


def _template(page: str, index: int) -> str:
    found = re.search(rf'<template id="prepare-{index}">(.*?)</template>', page, re.DOTALL)
    assert found, f"no preparation for case {index}"
    return found.group(1)


def test_a_prepared_case_shows_its_sequences_registration_mask_pictures_and_times(page):
    section = _template(page, 1)
    for text in ("Preparation from raw scans", "Sequences", "#1 localizer", "excluded: a localizer/scout",
                 "Registration", "0.4412", "0.8123", "t1ce to atlas", "brain 1412 mL",
                 "tumour cut-off check: 0.1 mL of lesion-like tissue outside the mask (limit 1 mL)",
                 "Times", "co-register", "4.3", "skull-strip"):
        assert text in section, text
    assert section.count("data:image/png;base64,") == 1  # the mask picture; the name leaving the folder is ignored
    assert base64.b64encode(b"not for the report").decode() not in page
    assert "prepared from raw scans" in page


def test_a_case_not_prepared_has_no_preparation_and_strings_are_escaped(page):
    assert 'id="prepare-0"' not in page
    assert HOSTILE not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in _template(page, 1)


def test_an_unreadable_record_is_one_line_in_the_report_not_a_failure(tmp_path):
    write_case(tmp_path / "cases", "prep_001", prediction_dir=tmp_path / "pred")
    prepare = tmp_path / "cases" / "prep_001" / "prepare"
    prepare.mkdir()
    (prepare / "prepare.json").write_text("{not json")
    page = build_batch_report(tmp_path / "pred", tmp_path / "cases").html.read_text()
    assert "unreadable prepare record (JSONDecodeError)" in _template(page, 0)
