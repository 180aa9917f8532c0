"""bratsx train --folds / --fold all, cv summary, export --folds (an ensemble folder), postprocess tune
--predictions on the out-of-fold predictions, and infer with the ensemble's spec, end to end at toy size."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bratsx.cli import app
from bratsx.modelfolder import ModelFolder
from bratsx.postprocess import PostprocessSpec
from bratsx.synth import write_synthetic_dataset

runner = CliRunner()


@pytest.mark.slow
def test_a_cross_validation_trains_each_fold_predicts_out_of_fold_and_feeds_the_tuner(tmp_path):
    pytest.importorskip("torch")
    data = tmp_path / "data"
    write_synthetic_dataset(data, cases=4, shape=(32, 32, 24), seed=5)
    cv = tmp_path / "cv"
    train = ["train", str(data), "--out", str(cv), "--folds", "2", "--cache-dir", str(tmp_path / "cache"),
             "--epochs", "1", "--iterations", "2", "--patch", "16", "16", "16", "--features", "4,8", "--workers", "0",
             "--gpus", "0"]
    first = runner.invoke(app, [*train, "--fold", "0"], env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    splits = json.loads((cv / "splits.json").read_text())
    assert len(splits) == 2 and sorted(c for f in splits for c in f["val"]) == sorted(p.name for p in data.iterdir())
    assert sorted(p.stem for p in (cv / "oof" / "records").glob("*.json")) == sorted(splits[0]["val"])

    both = runner.invoke(app, [*train, "--fold", "all"], env={"COLUMNS": "200"})  # fold 0 resumes, fold 1 trains
    assert both.exit_code == 0, both.output
    assert "fold 0 of 2" in both.output and "(resumed)" in both.output
    assert json.loads((cv / "splits.json").read_text()) == splits  # reused, not redrawn
    assert json.loads((cv / "fold_1" / "config.json").read_text())["fold"] == 1

    summary = runner.invoke(app, ["cv", "summary", str(cv)], env={"COLUMNS": "200"})
    assert summary.exit_code == 0, summary.output
    assert "pooled" in summary.output
    pooled = json.loads((cv / "cv_summary.json").read_text())["pooled"]
    assert pooled["cases"] == 4 and pooled["missing"] == [] and set(pooled["lesion_dice"]) == {"WT", "TC", "ET"}

    model = Path(os.environ["BRATSX_HOME"]) / "models" / "cv"  # the default: the workspace's models/<cv name>
    exported = runner.invoke(app, ["export", "--folds", str(cv)], env={"COLUMNS": "200"})
    assert exported.exit_code == 0, exported.output
    assert json.loads((model / "model.json").read_text())["members"] == ["fold_0", "fold_1"]
    listed = runner.invoke(app, ["models"], env={"COLUMNS": "250"})
    assert listed.exit_code == 0 and "ensemble of 2" in listed.output, listed.output
    tuned = runner.invoke(app, ["postprocess", "tune", str(model), "--cases", str(data), "--predictions",
                                str(cv / "oof")], env={"COLUMNS": "200"})
    assert tuned.exit_code == 0, tuned.output
    assert json.loads((model / "model.json").read_text())["postprocess"]["cases"] == sorted(
        c for f in splits for c in f["val"])
    spec = ModelFolder.read(model).postprocess

    again = runner.invoke(app, ["export", "--folds", str(cv), "--out", str(model)], env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert ModelFolder.read(model).postprocess == spec  # the tuned spec survives a re-export
    inferred = runner.invoke(app, ["infer", str(data), "-m", str(model), "--backend", "ort", "-o",
                                   str(tmp_path / "out")], env={"COLUMNS": "200"})
    assert inferred.exit_code == 0, inferred.output
    record = json.loads(next((tmp_path / "out" / "records").glob("*.json")).read_text())
    assert PostprocessSpec.from_dict(record["settings"]["postprocess"]) == spec
