"""INT8 export: NNCF quantization into the model folder, its gate, and the openvino-int8 backend."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxscript")
pytest.importorskip("nncf")
pytest.importorskip("openvino")

from sharpened import sharpened_checkpoint
from typer.testing import CliRunner

from bratsx.cli import app
from bratsx.contract import ModelContract
from bratsx.errors import BratsxError
from bratsx.export.int8 import INT8_GATE_DICE, calibration_tiles
from bratsx.modelfolder import ModelFolder
from bratsx.runtime import open_model
from bratsx.synth import write_synthetic_dataset

pytestmark = pytest.mark.slow  # each export quantizes and gates on whole synthetic cases


@pytest.fixture(scope="module")
def sharp(tiny_run, tmp_path_factory):
    return sharpened_checkpoint(tiny_run, tmp_path_factory.mktemp("int8_sharp") / "sharp.pt")


@pytest.fixture(scope="module")
def int8_folder(sharp, tmp_path_factory):
    """The sharpened tiny model exported with --int8 through the CLI (synthetic calibration), its gate lowered:
    int8 on a network of 4-16 channels moves more voxels than 0.99 allows (see the refusal test)."""
    out = tmp_path_factory.mktemp("int8") / "model"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("bratsx.export.int8.INT8_GATE_DICE", 0.5)
        result = CliRunner().invoke(app, ["export", str(sharp), "--out", str(out), "--int8"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "model.int8.xml" in result.output and "Statistics collection" not in result.output
    return out


def test_int8_below_its_gate_is_left_out_saying_why_in_one_line_and_the_rest_ships(sharp, tmp_path):
    out = tmp_path / "model"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("bratsx.export.int8.INT8_GATE_DICE", 1.01)  # a planted failing gate: no Dice reaches it
        result = CliRunner().invoke(app, ["export", str(sharp), "--out", str(out), "--int8", "--calib-cases", "1"],
                                    env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert (out / "model.onnx").is_file() and not list(out.glob("model.int8.*"))
    lines = [line for line in result.output.splitlines() if "int8 not shipped" in line]
    assert len(lines) == 1 and "(gate 1.01)" in lines[0] and "held-out cases" in lines[0]
    gate = json.loads((out / "model.json").read_text())["gates"]["int8"]
    assert not gate["passed"] and gate["reason"] == lines[0].strip() and gate["threshold"] == 1.01
    assert "model.int8.xml" not in json.loads((out / "model.json").read_text())["files"]
    assert not set(gate["gate_cases"]) & set(gate["calibration_cases"]) or gate["gate_source"].startswith("synthetic")


def test_int8_export_writes_a_gated_ir_pair_and_records_its_gate(int8_folder):
    assert (int8_folder / "model.int8.xml").is_file() and (int8_folder / "model.int8.bin").is_file()
    info = json.loads((int8_folder / "model.json").read_text())
    gate = info["gates"]["int8"]
    assert gate["passed"] and gate["threshold"] == 0.5 and INT8_GATE_DICE == 0.99
    assert set(gate["dice"]) == {"WT", "TC", "ET"} and min(gate["dice"].values()) >= 0.5
    assert gate["calibration"] == "synthetic" and gate["gate_source"].startswith("synthetic (seed 1")
    assert gate["method"] == "ptq" and len(gate["kept_in_f32"]) == 2  # the first convolution and the head
    assert len(gate["gate_cases"]) == gate["cases"] == 2 and len(gate["calibration_cases"]) == 2
    assert {"model.int8.xml", "model.int8.bin"} <= set(info["files"])
    assert "int8" in ModelFolder.read(int8_folder).precisions


def test_the_int8_ir_holds_quantized_convolutions(int8_folder):
    import openvino as ov

    types = {op.get_type_name() for op in ov.Core().read_model(str(int8_folder / "model.int8.xml")).get_ops()}
    assert "FakeQuantize" in types


def test_openvino_int8_backend_runs_the_folders_ir_close_to_fp32(int8_folder, tmp_path):
    from bratsx.cases import discover_cases

    write_synthetic_dataset(tmp_path, cases=1, shape=(40, 36, 30), seed=9)
    with open_model(int8_folder, "openvino-int8") as int8, open_model(int8_folder, "openvino") as fp32:
        assert int8.file.name == "model.int8.xml" and int8.backend.precision == "int8"
        assert int8.backend.name == "openvino-int8"
        tiles = np.concatenate(list(calibration_tiles(discover_cases(tmp_path), fp32.contract))[:4])
        got, want = int8.backend.run(tiles), fp32.backend.run(tiles)
    assert got.shape == want.shape and np.mean(np.abs(got - want)) < 0.1


def test_openvino_int8_needs_a_folder_exported_with_int8(tiny_onnx):
    with pytest.raises(BratsxError, match="bratsx export --int8"):
        open_model(tiny_onnx.parent, "openvino-int8")


def test_calibration_tiles_are_the_tiles_inference_plans(tmp_path):
    from bratsx.cases import discover_cases

    write_synthetic_dataset(tmp_path, cases=2, shape=(40, 36, 30), seed=5)
    contract = ModelContract((16, 16, 16), "regions", {"features": [4, 8, 16]})
    tiles = list(calibration_tiles(discover_cases(tmp_path), contract))
    assert len(tiles) > 2 and all(t.shape == (1, 4, 16, 16, 16) and t.dtype == np.float32 for t in tiles)
    assert all(np.abs(t).max() > 0 for t in tiles)  # z-scored brain, no empty tile


def _split_cases(root, ids, seed=5):
    """Synthetic cases renamed to ``ids`` (their folder and file names)."""
    from bratsx.cases import discover_cases

    write_synthetic_dataset(root, cases=len(ids), shape=(40, 36, 30), seed=seed)
    for case, new in zip(discover_cases(root), ids):
        folder = case.folder
        for path in folder.iterdir():
            path.rename(folder / path.name.replace(case.case_id, new))
        folder.rename(root / new)
    return root


def test_int8_calibrates_on_the_splits_training_cases_and_gates_on_its_validation_cases(tmp_path):
    from bratsx.export.int8 import int8_cases

    root = _split_cases(tmp_path / "cases", ["a", "b", "c", "d"])
    contract = ModelContract((16, 16, 16), "regions", {"features": [4, 8, 16]})
    split = {"train": ["a", "b", "c"], "val": ["d"]}
    calibration, gate, source = int8_cases(contract, tmp_path / "scratch", root, 2, split=split)
    assert [c.case_id for c in calibration] == ["a", "b"] and [c.case_id for c in gate] == ["d"]
    assert "validation cases" in source
    with pytest.raises(BratsxError, match="no train/val split.*--int8-gate-dir"):
        int8_cases(contract, tmp_path / "scratch", root, 2)
    gate_dir = _split_cases(tmp_path / "held", ["c"], seed=6)
    calibration, gate, source = int8_cases(contract, tmp_path / "scratch", root, 3, gate_dir=gate_dir)
    assert [c.case_id for c in gate] == ["c"] and "c" not in [c.case_id for c in calibration]
    assert len(calibration) == 3 and source.startswith("--int8-gate-dir")


def test_accuracy_control_reverts_convolutions_judged_by_dice_on_the_calibration_cases(sharp, tmp_path):
    from bratsx.export.int8 import MAX_REVERTED, int8_cases, int8_gated
    from bratsx.export.pipeline import export_model
    from bratsx.runtime.backends import OrtBackend

    onnx_path = export_model(sharp, tmp_path / "fp32").onnx
    contract = open_model(onnx_path, "ort").contract
    calibration, gate, source = int8_cases(contract, tmp_path / "scratch", None, 1)
    result = int8_gated(onnx_path, tmp_path / "model.int8.xml", OrtBackend(onnx_path), contract, calibration[:1],
                        gate, source, method="accuracy-control")
    assert result.method == "accuracy-control" and (tmp_path / "model.int8.xml").is_file()
    assert 2 <= len(result.kept_in_f32) <= 2 + MAX_REVERTED  # the ends, and what accuracy control reverted
    assert set(result.gate.dice) == {"WT", "TC", "ET"}
