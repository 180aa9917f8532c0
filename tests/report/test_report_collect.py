"""Gathering a batch from records, metrics.csv and summary.json, or the prediction files alone."""

import json

import pytest
from reportcases import write_case

from bratsx.errors import BratsxError
from bratsx.report.collect import collect_batch
from bratsx.runtime.records import CaseRecord, write_record


def test_prediction_files_alone_give_ok_cases_with_their_input_case(tmp_path):
    for case_id in ("case_002", "case_010", "case_001"):
        write_case(tmp_path / "cases", case_id, prediction_dir=tmp_path / "pred")
    (tmp_path / "pred" / "case_001_probabilities.nii.gz").write_bytes(b"")
    entries = collect_batch(tmp_path / "pred", tmp_path / "cases")
    assert [e.case_id for e in entries] == ["case_001", "case_002", "case_010"]
    assert all(e.status == "ok" and e.prediction.is_file() and e.case.case_id == e.case_id for e in entries)


def test_metrics_csv_gives_status_metrics_latency_and_summary_errors(tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "a.nii.gz").write_bytes(b"")
    (pred / "metrics.csv").write_text("case_id,status,dice_WT,hd95_WT,load_s,inference_s\n"
                                      "a,ok,0.9,3.5,0.5,2.0\nb,failed,,,,\nc,skipped,,,,\n")
    (pred / "summary.json").write_text(json.dumps({"failed": [{"case_id": "b", "error": "case b: truncated"}]}))
    entries = {e.case_id: e for e in collect_batch(pred)}
    assert entries["a"].metrics == {"dice_WT": 0.9, "hd95_WT": 3.5}
    assert entries["a"].seconds == pytest.approx(2.5)
    assert entries["a"].prediction == pred / "a.nii.gz"
    assert (entries["b"].status, entries["b"].error, entries["b"].prediction) == ("failed", "case b: truncated", None)
    assert entries["c"].status == "skipped" and entries["c"].seconds is None
    assert all(e.case is None for e in entries.values())


def test_records_win_over_metrics_csv(tmp_path):
    pred = tmp_path / "pred"
    (pred / "a.nii.gz").parent.mkdir()
    (pred / "a.nii.gz").write_bytes(b"")
    (pred / "metrics.csv").write_text("case_id,status,dice_WT,error\na,ok,0.1,\nb,failed,,case b: boom\n")
    write_record(pred, CaseRecord("a", "ok", output="a.nii.gz", seconds={"load": 0.5, "inference": 1.5},
                                  metrics={"dice_WT": 0.8, "lesion_dice_WT": 0.7},
                                  volumes_ml={"WT": 12.0, "TC": 4.0, "ET": 1.0}))
    write_record(pred, CaseRecord("c", "failed", error="case c: truncated", seconds={"load": 0.2}))
    entries = {e.case_id: e for e in collect_batch(pred)}
    assert entries["a"].metrics == {"dice_WT": 0.8, "lesion_dice_WT": 0.7}
    assert entries["a"].seconds == pytest.approx(2.0) and entries["a"].volumes_ml["WT"] == 12.0
    assert entries["a"].prediction == pred / "a.nii.gz"
    assert (entries["b"].status, entries["b"].error) == ("failed", "case b: boom")
    assert (entries["c"].status, entries["c"].error, entries["c"].seconds) == ("failed", "case c: truncated", 0.2)


def test_an_unreadable_record_leaves_the_case_to_the_other_sources(tmp_path):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "a.json").write_text("{not json")
    (tmp_path / "a.nii.gz").write_bytes(b"")
    (entry,) = collect_batch(tmp_path)
    assert (entry.case_id, entry.status, entry.prediction) == ("a", "ok", tmp_path / "a.nii.gz")


def test_a_folder_without_predictions_is_refused(tmp_path):
    with pytest.raises(BratsxError, match="no prediction"):
        collect_batch(tmp_path)
