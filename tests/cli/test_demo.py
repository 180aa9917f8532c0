import json

import pytest
from typer.testing import CliRunner

from bratsx.cli import app


def test_demo_runs_the_whole_pipeline_in_fast_mode(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    result = CliRunner().invoke(app, ["demo", str(tmp_path / "demo"), "--fast"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    demo = tmp_path / "demo"
    assert len(list((demo / "cases").iterdir())) == 4
    assert (demo / "runs" / "demo" / "checkpoints" / "best.pt").exists()
    assert (demo / "models" / "demo" / "model.onnx").exists() and (demo / "models" / "demo" / "model.json").exists()
    held_out = json.loads((demo / "runs" / "demo" / "splits.json").read_text())[0]["val"]
    assert sorted(p.name for p in (demo / "predictions").glob("*.nii.gz")) == sorted(f"{c}.nii.gz" for c in held_out)
    assert "demo done" in result.output and "bratsx infer YOUR_CASES" in result.output


def test_demo_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "something").write_text("keep me")
    result = CliRunner().invoke(app, ["demo", str(tmp_path)])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (tmp_path / "something").read_text() == "keep me"
