import json

import numpy as np
import onnx
import pytest
from sharpened import sharpened_checkpoint

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

from bratsx.contract import ModelContract, read_onnx_contract
from bratsx.errors import BratsxError
from bratsx.export.fp16 import accuracy_gate, calibration_cases, fp16_from_onnx
from bratsx.export.onnx_export import INPUT_NAME
from bratsx.export.pipeline import ExportOptions, export_model
from bratsx.export.verify import FP32_TOLERANCE, compare_with_torch, verification_inputs
from bratsx.network.checkpoint import model_from_checkpoint
from bratsx.runtime.backends import OrtBackend


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    return export_model(tiny_run, out), model_from_checkpoint(tiny_run)


def test_onnx_runtime_matches_pytorch(exported):
    report, trained = exported
    assert report.agreement.max_rel < FP32_TOLERANCE
    again = compare_with_torch(OrtBackend(report.onnx).run, trained, verification_inputs(trained, seed=3))
    assert again.max_rel < FP32_TOLERANCE and again.max_abs < 1e-3


def test_the_graph_has_named_io_with_the_activation_inside(exported):
    report, _ = exported
    model = onnx.load(str(report.onnx))
    assert [i.name for i in model.graph.input] == [INPUT_NAME]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    assert "Sigmoid" in {n.op_type for n in model.graph.node}
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [4, 16, 16, 16]
    probabilities = OrtBackend(report.onnx).run(np.random.default_rng(0).normal(size=(1, 4, 16, 16, 16)))
    assert probabilities.min() >= 0 and probabilities.max() <= 1


@pytest.mark.parametrize("batch", [1, 3])
def test_dynamic_batch(exported, batch):
    report, trained = exported
    tiles = np.random.default_rng(batch).normal(size=(batch, 4, 16, 16, 16)).astype(np.float32)
    got = OrtBackend(report.onnx).run(tiles)
    with torch.no_grad():
        expected = torch.sigmoid(trained.network(torch.from_numpy(tiles))).numpy()
    assert got.shape == (batch, 3, 16, 16, 16)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_contract_round_trips_through_the_metadata(exported, tiny_run):
    report, trained = exported
    contract = read_onnx_contract(report.onnx)
    assert contract == trained.contract
    assert contract.patch_size == (16, 16, 16) and contract.channel_names == ("WT", "TC", "ET")
    assert contract.modality_order == ("flair", "t1", "t1ce", "t2")
    assert contract.canonical_orientation == "SPL" and contract.normalization.startswith("zscore")
    assert len(contract.checkpoint_sha256) == 64
    assert set(contract.validation_dice) == {"WT", "TC", "ET"}
    assert OrtBackend(report.onnx).precision == "fp32"


def test_a_model_without_the_contract_is_refused(tmp_path, exported):
    report, _ = exported
    bare = onnx.load(str(report.onnx))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(BratsxError, match="no bratsx contract"):
        read_onnx_contract(tmp_path / "bare.onnx")


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_exporting_something_that_is_not_a_bratsx_checkpoint_fails_clearly(tmp_path, content):
    path = tmp_path / "model.pt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, path)  # a torch file, but not bratsx's
    else:
        path.write_bytes(content)
    with pytest.raises(BratsxError, match="not a (readable )?bratsx checkpoint"):
        export_model(path, tmp_path / "out")
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_a_folder_without_checkpoints_fails_clearly(tmp_path):
    with pytest.raises(BratsxError, match="no checkpoints/best.pt"):
        export_model(tmp_path, tmp_path / "out")


def decisive_checkpoint(tiny_run, tmp_path, first_conv_scale=1.0):
    """The tiny checkpoint with confident outputs, optionally with a first conv scaled so far that fp16
    activations overflow."""
    return sharpened_checkpoint(tiny_run, tmp_path / f"scaled{first_conv_scale:g}.pt", first_conv_scale)


def test_fp16_gate_passes_a_sane_model(tiny_run, tmp_path):
    report = export_model(decisive_checkpoint(tiny_run, tmp_path), tmp_path / "out", ExportOptions(fp16=True))
    assert report.fp16_gate.passed
    assert min(report.fp16_gate.dice.values()) >= 0.999
    assert OrtBackend(report.fp16_onnx).precision == "fp16"
    assert read_onnx_contract(report.fp16_onnx) == read_onnx_contract(report.onnx)
    typed = onnx.shape_inference.infer_shapes(onnx.load(str(report.fp16_onnx)))
    types = {v.name: v.type.tensor_type.elem_type for v in typed.graph.value_info}
    reductions = [n for n in typed.graph.node if n.op_type.startswith("Reduce")]
    assert {n.op_type for n in reductions} == {"ReduceSum", "ReduceMean"}  # the staged norms' two kinds
    assert all(types[n.output[0]] == onnx.TensorProto.FLOAT for n in reductions)  # normalisation in fp32
    convolutions = [n.output[0] for n in typed.graph.node if n.op_type == "Conv"]
    assert all(types.get(c) == onnx.TensorProto.FLOAT16 for c in convolutions[:-1])  # the rest in fp16


def test_fp16_gate_refuses_a_model_that_overflows_in_fp16(tiny_run, tmp_path):
    broken = decisive_checkpoint(tiny_run, tmp_path, first_conv_scale=1e6)
    with pytest.raises(BratsxError, match=r"fp16 export refused: Dice against fp32 .* \(gate 0.999\)"):
        export_model(broken, tmp_path / "out", ExportOptions(fp16=True))
    assert not (tmp_path / "out").exists()  # nothing half-exported
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # nor a staging folder left


def test_gate_compares_whole_cases_region_by_region(exported, tmp_path):
    report, trained = exported
    cases = calibration_cases(trained.contract, tmp_path / "calibration", count=1)
    assert len(cases) == 1 and cases[0].label is not None
    same = accuracy_gate(OrtBackend(report.onnx), OrtBackend(report.onnx), trained.contract, cases)
    assert same.passed and same.dice == {"WT": 1.0, "TC": 1.0, "ET": 1.0}

    class Inverted(OrtBackend):
        def run(self, batch):
            return 1 - super().run(batch)

    inverted = accuracy_gate(OrtBackend(report.onnx), Inverted(report.onnx), trained.contract, cases)
    assert not inverted.passed


def test_fp16_conversion_keeps_io_in_fp32(exported, tmp_path):
    report, _ = exported
    model = onnx.load(str(fp16_from_onnx(report.onnx, tmp_path / "m16.onnx")))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)


def test_contract_json_is_plain_data(exported):
    report, _ = exported
    [entry] = [p for p in onnx.load(str(report.onnx)).metadata_props if p.key == "bratsx_contract"]
    assert ModelContract.from_dict(json.loads(entry.value)).output_mode.value == "regions"


def test_export_through_the_cli(tiny_run, tmp_path):
    from typer.testing import CliRunner

    from bratsx.cli import app

    result = CliRunner().invoke(app, ["export", str(tiny_run), "--out", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model.onnx").exists()
    assert "ORT vs PyTorch" in result.output and "relative" in result.output
    refused = CliRunner().invoke(app, ["export", str(tmp_path / "model.onnx"), "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2 and "not a readable bratsx checkpoint" in refused.output


def test_export_writes_a_model_folder_that_describes_itself(exported):
    from bratsx.contract import file_sha256
    from bratsx.modelfolder import ModelFolder

    report, trained = exported
    folder = ModelFolder.read(report.onnx.parent)
    assert folder.info["name"] == folder.name == report.onnx.parent.name  # not the staging folder's name
    assert folder.contract == read_onnx_contract(report.onnx)
    assert folder.info["files"]["model.onnx"]["sha256"] == file_sha256(report.onnx)
    assert folder.info["gates"]["fp32"]["passed"] and folder.info["gates"]["fp32"]["max_rel"] < FP32_TOLERANCE
    assert folder.checkpoint == trained.checkpoint.resolve()
    assert folder.precisions == ["fp32"]


def test_export_checks_openvino_f32_against_pytorch_too(exported):
    pytest.importorskip("openvino")
    from bratsx.modelfolder import ModelFolder

    report, _ = exported
    assert report.openvino_agreement.max_rel < FP32_TOLERANCE
    recorded = ModelFolder.read(report.onnx.parent).info["gates"]["fp32"]["openvino"]
    assert recorded["max_rel"] == report.openvino_agreement.max_rel


def test_an_export_openvino_computes_inexactly_is_refused_and_nothing_is_written(tiny_run, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    import bratsx.runtime.backends as backends

    class Skewed(backends.OpenVinoBackend):
        def run(self, batch):
            return super().run(batch) * 1.01

    monkeypatch.setattr(backends, "OpenVinoBackend", Skewed)
    with pytest.raises(BratsxError, match="OpenVINO f32 differs from PyTorch by 1.*e-02 .relative."):
        export_model(tiny_run, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_export_refuses_to_replace_a_folder_that_is_not_a_model_folder(tiny_run, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(BratsxError, match="is not a model folder"):
        export_model(tiny_run, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_max_batch_one_exports(tiny_run, tmp_path):
    report = export_model(tiny_run, tmp_path / "m", ExportOptions(max_batch=1))
    assert OrtBackend(report.onnx).run(np.zeros((1, 4, 16, 16, 16), np.float32)).shape == (1, 3, 16, 16, 16)


def test_gates_of_a_model_taking_other_channels_need_real_cases(tmp_path):
    from bratsx.contract import ModelContract

    contract = ModelContract(patch_size=(16, 16, 16), output_mode="regions", network={}, modality_order=("t1", "adc"))
    with pytest.raises(BratsxError, match="the model takes ADC, which synthetic cases do not have; give real cases"):
        calibration_cases(contract, tmp_path / "scratch")
    assert not (tmp_path / "scratch").exists()
