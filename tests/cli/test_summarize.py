import csv
import json

import pytest
from standins import same_files
from typer.testing import CliRunner

from bratsx.cli import app
from bratsx.runtime.parts import part_of
from bratsx.synth import write_synthetic_dataset

runner = CliRunner()


@pytest.fixture
def cases_dir(tmp_path):
    write_synthetic_dataset(tmp_path / "cases", cases=4, shape=(32, 32, 24), seed=9)
    return tmp_path / "cases"


def infer(cases_dir, model, out, *options):
    result = runner.invoke(app, ["infer", str(cases_dir), "-m", str(model), "--backend", "ort", "-o", str(out),
                                 "--overlap", "0", *options], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result


def metric_rows(path):
    """metrics.csv without its timing columns (which differ from run to run)."""
    with open(path) as handle:
        return [{k: v for k, v in row.items() if not k.endswith("_s")} for row in csv.DictReader(handle)]


def test_every_part_then_summarize_equals_one_run(tiny_onnx, cases_dir, tmp_path):
    infer(cases_dir, tiny_onnx, tmp_path / "single")
    for part in ("0", "1"):
        shown = infer(cases_dir, tiny_onnx, tmp_path / "parts", "--num-parts", "2", "--part-id", part)
        assert f"part {part} of 2" in shown.output and "bratsx summarize" in shown.output
    result = runner.invoke(app, ["summarize", str(tmp_path / "parts"), "--cases", str(cases_dir)])
    assert result.exit_code == 0, result.output
    assert len(same_files(tmp_path / "single", tmp_path / "parts")) == 4
    assert metric_rows(tmp_path / "parts" / "metrics.csv") == metric_rows(tmp_path / "single" / "metrics.csv")
    merged, single = (json.loads((tmp_path / f / "summary.json").read_text()) for f in ("parts", "single"))
    assert merged["metrics"] == single["metrics"] and merged["by_status"] == {"ok": 4}


def test_summarize_merges_folders_and_lists_the_cases_of_a_lost_part(tiny_onnx, cases_dir, tmp_path):
    from bratsx.cases import discover_cases

    for part in ("0", "2"):  # part 1 of 3 was never run
        infer(cases_dir, tiny_onnx, tmp_path / f"part{part}", "--num-parts", "3", "--part-id", part)
    result = runner.invoke(app, ["summarize", str(tmp_path / "part0"), str(tmp_path / "part2"), "--cases",
                                 str(cases_dir), "--out", str(tmp_path / "merged")], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    lost = [c.case_id for c in part_of(discover_cases(cases_dir), 3, 1)]
    assert all(case_id in result.output for case_id in lost) and "1 case(s) not finished" in result.output
    summary = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert summary["by_status"] == {"missing": 1, "ok": 3}
    assert [row["case_id"] for row in metric_rows(tmp_path / "merged" / "metrics.csv")] == sorted(
        c.case_id for c in discover_cases(cases_dir))


def test_infer_with_two_workers_writes_what_one_process_writes(tiny_onnx, cases_dir, tmp_path):
    infer(cases_dir, tiny_onnx, tmp_path / "single")
    shown = infer(cases_dir, tiny_onnx, tmp_path / "workers", "--workers", "2")
    assert "2 worker processes" in shown.output
    assert len(same_files(tmp_path / "single", tmp_path / "workers")) == 4
    assert metric_rows(tmp_path / "workers" / "metrics.csv") == metric_rows(tmp_path / "single" / "metrics.csv")


def test_a_part_id_outside_the_parts_is_refused(tiny_onnx, cases_dir, tmp_path):
    result = runner.invoke(app, ["infer", str(cases_dir), "-m", str(tiny_onnx), "-o", str(tmp_path / "out"),
                                 "--num-parts", "2", "--part-id", "2"])
    assert result.exit_code == 2 and "--part-id 2: must be between 0 and 1" in result.output
