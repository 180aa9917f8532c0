"""``bratsx train --init``: a new run starts from another model's weights (fine-tuning), or refuses in one line."""

import pytest
import torch
from test_training import tiny_config

from bratsx.errors import BratsxError
from bratsx.export.onnx_export import onnx_from_checkpoint
from bratsx.network.checkpoint import load_checkpoint, model_from_checkpoint
from bratsx.network.unet import NetworkConfig, UNet3D
from bratsx.trainer.init_weights import initialise_from
from bratsx.trainer.loop import TrainingStarted, train


@pytest.fixture(scope="module")
def trained_run(tiny_data, tmp_path_factory):
    """A tiny trained run and its network exported to ONNX as ``bratsx export`` writes it."""
    root = tmp_path_factory.mktemp("source_run")
    train(tiny_config(tiny_data, root / "run", root / "cache", epochs=1))
    last = root / "run" / "checkpoints" / "last.pt"
    onnx_path = onnx_from_checkpoint(model_from_checkpoint(last), root / "model.onnx")
    return last, onnx_path


def _network():
    torch.manual_seed(123)
    return UNet3D(NetworkConfig(features=(4, 8, 16)))


def test_init_from_an_exported_onnx_copies_every_inference_weight_and_keeps_only_the_extra_heads(trained_run):
    last, onnx_path = trained_run
    source = load_checkpoint(last)["model"]
    network = _network()
    report = initialise_from(onnx_path, network)
    state = network.state_dict()
    copied = [k for k in state if k not in report.kept_seeded]
    assert report.copied == len(copied) > 0
    for key in copied:
        assert torch.equal(state[key], source[key]), key
    assert report.kept_seeded and all(k.startswith("heads.") for k in report.kept_seeded)
    assert "heads.0.weight" not in report.kept_seeded  # the finest head is exported, so it is copied


def test_init_from_a_checkpoint_copies_every_weight(trained_run):
    last, _ = trained_run
    network = _network()
    report = initialise_from(last, network)
    assert report.kept_seeded == ()
    source = load_checkpoint(last)["model"]
    assert all(torch.equal(v, source[k]) for k, v in network.state_dict().items())


def test_init_from_another_architecture_is_refused_in_one_line(trained_run):
    _, onnx_path = trained_run
    with pytest.raises(BratsxError, match="another architecture") as caught:
        initialise_from(onnx_path, UNet3D(NetworkConfig(features=(8, 16, 32))))
    assert "\n" not in str(caught.value)


def test_init_from_a_file_that_is_not_onnx_is_refused(tmp_path):
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not onnx")
    with pytest.raises(BratsxError, match="not a readable ONNX file"):
        initialise_from(bogus, _network())


def test_a_run_started_with_init_says_so_and_trains_from_the_source_weights(tiny_data, trained_run, tmp_path):
    last, onnx_path = trained_run
    events = []
    config = tiny_config(tiny_data, tmp_path / "run", tmp_path / "cache", epochs=1, iterations=1, init=onnx_path)
    train(config, on_event=events.append)
    started = next(e for e in events if isinstance(e, TrainingStarted))
    assert started.initialised.startswith(f"initialised from {onnx_path}")
    # one SGD step from the source moves the weights only a little; a seeded start would be far away
    after = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    source = load_checkpoint(last)["model"]
    seeded = UNet3D(NetworkConfig(features=(4, 8, 16))).state_dict()
    key = "encoder.1.0.0.weight" if "encoder.1.0.0.weight" in source else next(k for k in source if "weight" in k)
    assert (after[key] - source[key]).norm() < 0.5 * (seeded[key] - source[key]).norm()
