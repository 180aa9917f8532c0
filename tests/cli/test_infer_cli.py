import json

import pytest
from typer.testing import CliRunner

from bratsx.cli import app
from bratsx.synth import write_synthetic_dataset

runner = CliRunner()


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_infer_writes_segmentations_metrics_and_summary(tiny_onnx, tmp_path, backend):
    pytest.importorskip("onnxruntime" if backend == "ort" else "openvino")
    write_synthetic_dataset(tmp_path / "cases", cases=2, shape=(32, 32, 24), seed=8, layout="brats2023")
    result = runner.invoke(app, ["infer", str(tmp_path / "cases"), "--model", str(tiny_onnx), "--backend", backend],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = tmp_path / "cases-predictions"  # the default: beside the cases
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["BraTS-SYN-00001-000.nii.gz", "BraTS-SYN-00002-000.nii.gz"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["backend"] == backend and summary["by_status"] == {"ok": 2}
    assert set(summary["mean_seconds_per_stage"]) == {"load", "preprocess", "inference", "postprocess", "write"}
    assert "dice_WT" in summary["metrics"] and (out / "metrics.csv").read_text().startswith("case_id,status")


def test_a_missing_backend_package_names_the_extra(tiny_onnx, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino":
            raise ImportError("no openvino")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    write_synthetic_dataset(tmp_path / "cases", cases=1, shape=(32, 32, 24), seed=8)
    result = runner.invoke(app, ["infer", str(tmp_path / "cases"), "-m", str(tiny_onnx), "--backend", "openvino"])
    assert result.exit_code == 2
    assert "pip install 'bratsx[openvino]'" in result.output


def test_infer_report_writes_the_qc_report(tiny_onnx, tmp_path):
    pytest.importorskip("PIL")
    write_synthetic_dataset(tmp_path / "cases", cases=2, shape=(40, 40, 32), seed=3)
    result = CliRunner().invoke(app, ["infer", str(tmp_path / "cases"), "--model", str(tiny_onnx), "--backend", "ort",
                                      "--out", str(tmp_path / "out"), "--report"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    html = (tmp_path / "out" / "report" / "report.html").read_text()
    assert "BraTS20_Synthetic_001" in html and "http://" not in html
