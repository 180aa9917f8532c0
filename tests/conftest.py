"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from casefiles import write_folder_case
from nnunet_fixtures import build_fixtures, fixture_fingerprint

from bratsx.cases import Layout


@pytest.fixture(autouse=True)
def isolated_workspace(tmp_path_factory, monkeypatch):
    """Every test gets its own empty workspace ($BRATSX_HOME), so no test reads or writes the real one."""
    monkeypatch.setenv("BRATSX_HOME", str(tmp_path_factory.mktemp("workspace")))


@pytest.fixture
def brats2020_case(tmp_path: Path) -> Path:
    """A valid BraTS 2018-2021 case folder inside ``tmp_path``."""
    return write_folder_case(tmp_path, Layout.BRATS2020, "BraTS20_Training_001")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run directory with a checkpoint of a tiny network (patch 16^3, features 4-8-16)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    from bratsx.synth import write_synthetic_dataset
    from bratsx.trainer.config import TrainConfig
    from bratsx.trainer.loop import train

    root = tmp_path_factory.mktemp("export_run")
    write_synthetic_dataset(root / "data", cases=3, shape=(32, 32, 24), seed=2)
    config = TrainConfig(data_dir=root / "data", run_dir=root / "run", cache_dir=root / "cache", epochs=1,
                         iterations=2, patch=(16, 16, 16), features=(4, 8, 16), val_fraction=0.34, workers=0)
    train(config)
    return root / "run"


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run, tmp_path_factory):
    """The tiny run exported to model.onnx."""
    from bratsx.export.pipeline import export_model

    return export_model(tiny_run, tmp_path_factory.mktemp("tiny_onnx")).onnx


@pytest.fixture(scope="session")
def nnunet_root(request, tmp_path_factory) -> Path:
    """nnU-Net v2 results folders made by nnU-Net itself (tests/nnunet_fixtures.py: nnUNet_raw, nnUNet_preprocessed
    and nnUNet_results of the fixture datasets), built once and kept in pytest's cache between sessions (a new
    recipe gets a new folder; a session without the cache builds them in a temporary folder); tests using them are
    marked slow."""
    pytest.importorskip("nnunetv2")
    pytest.importorskip("onnxscript")
    name = f"nnunet-fixtures-{fixture_fingerprint()}"
    cache = getattr(request.config, "cache", None)
    return build_fixtures(cache.mkdir(name) if cache is not None else tmp_path_factory.mktemp(name))
