import json

import pytest

from bratsx.runtime.records import (
    RECORD_FORMAT,
    CaseRecord,
    CaseStatus,
    RecordFormatError,
    case_seconds,
    read_records,
    record_path,
    write_record,
)


def test_a_record_keeps_its_format_and_status_through_a_round_trip(tmp_path):
    write_record(tmp_path, CaseRecord("a", "ok", metrics={"dice_WT": 0.9}))
    [record] = read_records(tmp_path).values()
    assert record.status is CaseStatus.OK and record.format == RECORD_FORMAT and record.metrics == {"dice_WT": 0.9}
    assert json.loads(record_path(tmp_path, "a").read_text())["status"] == "ok"


def test_an_old_record_gets_a_clear_message_naming_its_file_not_a_key_error(tmp_path):
    path = record_path(tmp_path, "old")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"case_id": "old", "status": "ok"}))  # written before records had a format
    with pytest.raises(RecordFormatError, match=r"old\.json: a per-case record of no format .* rerun bratsx infer"):
        read_records(tmp_path, strict=True)
    assert read_records(tmp_path) == {}  # a rerun treats it as absent (and redoes the case)


def test_a_record_of_an_unknown_status_is_refused_in_one_line(tmp_path):
    with pytest.raises(RecordFormatError, match="not a per-case record"):
        CaseRecord.from_json(json.dumps({"case_id": "x", "status": "exploded", "format": RECORD_FORMAT}), "x.json")


def test_a_cases_time_adds_its_stages_not_their_parts():
    seconds = {"load": 0.5, "inference": 3.0, "inference.network": 2.5, "inference.blend": 0.5, "write": 0.25}
    assert case_seconds(seconds) == 3.75
