"""bratsx postprocess tune / --reset and bratsx infer --postprocess, on the tiny exported model; a folder's spec
reaches every consumer (open_model: infer, bench, serve) and survives a re-export."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from bratsx.cli import app
from bratsx.contract import file_sha256, read_onnx_contract
from bratsx.modelfolder import MODEL_JSON, POSTPROCESS_FILE, ModelFolder, set_postprocess
from bratsx.postprocess import NO_POSTPROCESS, PostprocessSpec
from bratsx.synth import write_synthetic_dataset

runner = CliRunner()
#: A spec that removes every tumour component a small volume can hold.
ERASE_ALL = PostprocessSpec(min_volume_mm3={"WT": 1e12})


@pytest.fixture
def model_folder(tiny_onnx, tmp_path):
    """A private copy of the tiny model folder (tests change it)."""
    pytest.importorskip("onnxruntime")
    return shutil.copytree(tiny_onnx.parent, tmp_path / "model")


@pytest.fixture
def labelled(tmp_path):
    write_synthetic_dataset(tmp_path / "cases", cases=2, shape=(32, 32, 24), seed=8)
    return tmp_path / "cases"


def test_tune_writes_a_hashed_spec_keeps_history_and_reset_walks_it_back(model_folder, labelled):
    args = ["postprocess", "tune", str(model_folder), "--cases", str(labelled), "--backend", "ort"]
    first = runner.invoke(app, [*args, "--metric", "dice"], env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    assert "before -> after" in first.output and "lesion-wise" in first.output
    info = json.loads((model_folder / MODEL_JSON).read_text())
    assert info["postprocess"]["metric"] == "dice" and info["postprocess"]["cases"] == ["BraTS20_Synthetic_001",
                                                                                      "BraTS20_Synthetic_002"]
    assert info["files"][POSTPROCESS_FILE]["sha256"] == file_sha256(model_folder / POSTPROCESS_FILE)
    tuned = ModelFolder.read(model_folder).postprocess
    assert tuned == PostprocessSpec.from_dict(info["postprocess"]["spec"])

    set_postprocess(ModelFolder.read(model_folder), ERASE_ALL, {"metric": "by hand"})
    assert ModelFolder.read(model_folder).postprocess == ERASE_ALL
    assert len(json.loads((model_folder / MODEL_JSON).read_text())["postprocess_history"]) == 1

    assert runner.invoke(app, ["postprocess", "tune", str(model_folder), "--reset"]).exit_code == 0
    assert ModelFolder.read(model_folder).postprocess == tuned
    assert runner.invoke(app, ["postprocess", "tune", str(model_folder), "--reset"]).exit_code == 0
    assert ModelFolder.read(model_folder).postprocess is None and not (model_folder / POSTPROCESS_FILE).exists()
    refused = runner.invoke(app, ["postprocess", "tune", str(model_folder), "--reset"])
    assert refused.exit_code == 2 and "no tuned post-processing to undo" in refused.output


def test_an_altered_spec_file_is_refused_in_one_line(model_folder):
    set_postprocess(ModelFolder.read(model_folder), ERASE_ALL, {})
    (model_folder / POSTPROCESS_FILE).write_text(json.dumps(NO_POSTPROCESS.to_dict()))
    from bratsx.errors import BratsxError
    from bratsx.runtime import open_model

    with pytest.raises(BratsxError, match="hash differs"):
        open_model(model_folder, "ort")


def _infer(model_folder, cases, out, *extra):
    result = runner.invoke(app, ["infer", str(cases), "-m", str(model_folder), "--backend", "ort", "-o", str(out),
                                 *extra], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    labels = {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(out.glob("*.nii.gz"))}
    settings = [json.loads(p.read_text())["settings"]["postprocess"] for p in sorted((out / "records").glob("*.json"))]
    return labels, settings


def test_infer_applies_the_folders_spec_unless_overridden(model_folder, labelled, tmp_path):
    raw, raw_settings = _infer(model_folder, labelled, tmp_path / "raw", "--postprocess", "none")
    assert PostprocessSpec.from_dict(raw_settings[0]) == NO_POSTPROCESS  # each record says which spec it got
    set_postprocess(ModelFolder.read(model_folder), ERASE_ALL, {})
    erased, settings = _infer(model_folder, labelled, tmp_path / "model")  # --postprocess model, the default
    assert all(not labels.any() for labels in erased.values())
    assert PostprocessSpec.from_dict(settings[0]) == ERASE_ALL
    spec_file = tmp_path / "identity.json"
    spec_file.write_text(json.dumps(NO_POSTPROCESS.to_dict()))
    overridden, _ = _infer(model_folder, labelled, tmp_path / "file", "--postprocess", str(spec_file))
    assert all((overridden[name] == raw[name]).all() for name in raw)


def test_a_bad_postprocess_choice_is_one_line(model_folder, labelled, tmp_path):
    result = runner.invoke(app, ["infer", str(labelled), "-m", str(model_folder), "--backend", "ort",
                                 "--postprocess", "nonsense"])
    assert result.exit_code == 2 and "--postprocess 'nonsense'" in result.output


def test_every_consumer_opens_the_folder_with_its_spec(model_folder):
    """bench (bench/worker.py) and serve (serve/pipeline.py) open models through open_model, as infer does."""
    from bratsx.runtime import open_model

    set_postprocess(ModelFolder.read(model_folder), ERASE_ALL, {})
    with open_model(model_folder, "ort") as opened:
        assert PostprocessSpec.from_dict(opened.contract.postprocess) == ERASE_ALL
    with open_model(model_folder / "model.onnx", "ort") as opened:  # a file in the folder: the folder's spec
        assert PostprocessSpec.from_dict(opened.contract.postprocess) == ERASE_ALL


def test_a_reexport_keeps_the_tuned_spec_and_embeds_it_in_the_onnx_contract(tiny_run, model_folder):
    from bratsx.export.pipeline import export_model

    set_postprocess(ModelFolder.read(model_folder), ERASE_ALL, {"metric": "by hand"})
    export_model(tiny_run, model_folder)
    folder = ModelFolder.read(model_folder)
    assert folder.postprocess == ERASE_ALL and folder.info["postprocess"]["metric"] == "by hand"
    assert PostprocessSpec.from_dict(read_onnx_contract(model_folder / "model.onnx").postprocess) == ERASE_ALL
