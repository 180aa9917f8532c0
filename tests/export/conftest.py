"""A tiny trained checkpoint to export."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxscript")

from bratsx.synth import write_synthetic_dataset  # noqa: E402
from bratsx.trainer.config import TrainConfig  # noqa: E402
from bratsx.trainer.loop import train  # noqa: E402


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run directory with a checkpoint of a tiny network (patch 16^3, features 4-8-16)."""
    root = tmp_path_factory.mktemp("export_run")
    write_synthetic_dataset(root / "data", cases=3, shape=(32, 32, 24), seed=2)
    config = TrainConfig(data_dir=root / "data", run_dir=root / "run", cache_dir=root / "cache", epochs=1,
                         iterations=2, patch=(16, 16, 16), features=(4, 8, 16), val_fraction=0.34, workers=0)
    train(config)
    return root / "run"
