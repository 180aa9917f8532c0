import random
from pathlib import Path

import pytest

from bratsx.cases import Case, Layout
from bratsx.errors import BratsxError
from bratsx.runtime.parts import merge_records, missing_cases, part_of
from bratsx.runtime.records import CaseRecord, write_record


def fake_cases(ids):
    return [Case(case_id=case_id, layout=Layout.PLAIN, folder=Path(case_id), images={}) for case_id in ids]


@pytest.mark.parametrize("num_parts", [1, 2, 3, 7, 12])
def test_parts_are_disjoint_complete_balanced_and_independent_of_listing_order(num_parts):
    ids = [f"case-{i:03d}" for i in range(10)]
    shuffled = random.Random(num_parts).sample(ids, len(ids))
    parts = [[c.case_id for c in part_of(fake_cases(ids), num_parts, i)] for i in range(num_parts)]
    assert parts == [[c.case_id for c in part_of(fake_cases(shuffled), num_parts, i)] for i in range(num_parts)]
    assert sorted(case_id for part in parts for case_id in part) == ids
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize(("num_parts", "part_id", "message"), [
    (0, 0, "--num-parts 0"), (2, 2, "--part-id 2: must be between 0 and 1"), (2, -1, "--part-id -1")])
def test_a_part_that_does_not_exist_is_refused(num_parts, part_id, message):
    with pytest.raises(BratsxError, match=message):
        part_of(fake_cases(["a"]), num_parts, part_id)


def test_merging_keeps_the_finished_record_of_a_case_recorded_twice(tmp_path: Path):
    write_record(tmp_path / "a", CaseRecord("x", "ok", finished="2026-01-01T00:00:00+00:00", metrics={"dice_WT": 1}))
    write_record(tmp_path / "b", CaseRecord("x", "failed", error="boom", finished="2026-02-01T00:00:00+00:00"))
    write_record(tmp_path / "b", CaseRecord("y", "ok", finished="2026-02-01T00:00:00+00:00"))
    merged = merge_records([tmp_path / "a", tmp_path / "b"])
    assert list(merged.records) == ["x", "y"] and merged.duplicates == ["x"]
    assert merged.records["x"].status == "ok" and merged.folders["x"] == tmp_path / "a"


def test_merging_a_folder_without_records_is_refused(tmp_path: Path):
    with pytest.raises(BratsxError, match="no records"):
        merge_records([tmp_path])


def test_missing_cases_are_those_without_a_finished_record():
    records = {"a": CaseRecord("a", "ok"), "b": CaseRecord("b", "failed", error="case b: boom")}
    assert missing_cases(fake_cases(["c", "b", "a"]), records) == {"b": "failed: case b: boom", "c": "no record"}
