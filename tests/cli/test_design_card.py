"""The design card's commands chain as written, in one workspace, at toy sizes:
``bratsx synth data`` -> ``bratsx train data`` -> ``bratsx export --fp16`` -> ``bratsx infer data --backend ort``
-> ``bratsx bench``; only size options are added (and the bench is limited to one backend and one case)."""

import json

import pytest
from typer.testing import CliRunner

from bratsx.cli import app

pytestmark = pytest.mark.slow


def test_the_design_card_sequence_chains_without_paths(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BRATSX_HOME")  # the workspace is the current folder, as for a user
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
        assert result.exit_code == 0, f"bratsx {' '.join(args)}:\n{result.output}"
        return result.output

    run("synth", "data", "--cases", "4", "--shape", "48", "48", "40")
    run("train", "data", "--name", "first", "--epochs", "2", "--iterations", "10", "--patch", "32", "32", "32",
        "--features", "4,8,16", "--val-fraction", "0.25", "--workers", "0")
    assert (tmp_path / "runs" / "first" / "checkpoints" / "best.pt").exists()

    exported = run("export", "--fp16")
    model = tmp_path / "models" / "first"
    assert {"model.onnx", "model.fp16.onnx", "model.json"} <= {p.name for p in model.iterdir()}
    assert json.loads((model / "model.json").read_text())["gates"]["fp16"]["passed"]
    assert "default model" in exported

    inferred = run("infer", "data", "--backend", "ort")
    assert "models/first/model.onnx" in inferred  # every run says which model it used
    predictions = tmp_path / "data-predictions"
    assert len(list(predictions.glob("*.nii.gz"))) == 4
    summary = json.loads((predictions / "summary.json").read_text())
    assert summary["by_status"] == {"ok": 4} and "dice_WT" in summary["metrics"]

    listed = run("models")
    assert "first" in listed and "fp32, fp16" in listed

    benched = run("bench", "--backends", "ort", "--synthetic", "1", "--repeat", "1", "--json", "bench.json")
    assert "benchmarking the workspace's default model first" in benched
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["patch"] == [32, 32, 32] and report["backends"]["ort"]["case_p50_s"] > 0


def test_infer_names_the_export_flag_a_backend_needs(tiny_run, tmp_path):
    from bratsx.export.pipeline import export_model
    from bratsx.synth import write_synthetic_dataset

    export_model(tiny_run, tmp_path / "model")
    write_synthetic_dataset(tmp_path / "cases", cases=1, shape=(32, 32, 24), seed=1)
    result = CliRunner().invoke(app, ["infer", str(tmp_path / "cases"), "--model", str(tmp_path / "model"),
                                      "--backend", "trt"])
    assert result.exit_code == 2 and "bratsx export --trt" in result.output
