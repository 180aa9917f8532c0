"""``--skull-strip synthstrip:PATH``: SynthStrip's network with the user's weights, exported once to ONNX.

No SynthStrip weights are downloaded: the test writes a random-weight network of SynthStrip's architecture
(the parameter names and shapes of FreeSurfer's ``StripModel``, checked below) as the user's checkpoint.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from typer.testing import CliRunner

from bratsx.cli import app
from bratsx.errors import BratsxError
from bratsx.prepare import synthstrip
from bratsx.prepare.skullstrip import parse_skull_strip
from bratsx.prepare.synthstrip import onnx_from_synthstrip, strip_network, synthstrip_mask

#: (name, shape) of a few of FreeSurfer's StripModel parameters: 7 levels, 16 -> 64 features, two convs a level.
EXPECTED = {
    "encoder.0.0.conv.weight": (16, 1, 3, 3, 3), "encoder.1.0.conv.weight": (32, 16, 3, 3, 3),
    "encoder.5.1.conv.weight": (64, 64, 3, 3, 3), "decoder.0.0.conv.weight": (64, 64, 3, 3, 3),
    "decoder.1.0.conv.weight": (64, 128, 3, 3, 3), "decoder.5.0.conv.weight": (32, 96, 3, 3, 3),
    "remaining.0.conv.weight": (16, 48, 3, 3, 3), "remaining.2.conv.weight": (1, 16, 3, 3, 3),
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A random-weight SynthStrip checkpoint, saved as FreeSurfer saves its (``model_state_dict``)."""
    torch.manual_seed(0)
    network = strip_network(torch)
    path = tmp_path_factory.mktemp("weights") / "synthstrip.1.pt"
    torch.save({"model_state_dict": network.state_dict()}, path)
    return path, network


def test_the_network_has_synthstrips_parameter_names_and_shapes(weights):
    _, network = weights
    state = network.state_dict()
    assert {name: tuple(state[name].shape) for name in EXPECTED} == EXPECTED
    assert len([n for n in state if n.endswith(".weight")]) == 6 * 2 + 6 * 2 + 3


def test_the_onnx_export_computes_what_torch_computes_and_is_cached(weights, tmp_path):
    path, network = weights
    exported = onnx_from_synthstrip(path, tmp_path)
    image = np.random.default_rng(0).random((1, 1, 64, 64, 128), dtype=np.float32)
    with torch.no_grad():
        expected = network.eval()(torch.from_numpy(image)).numpy()
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(None, {"image": image})[0] - expected).max() < 1e-4
    stamp = exported.stat().st_mtime_ns
    assert onnx_from_synthstrip(path, tmp_path) == exported and exported.stat().st_mtime_ns == stamp


def test_the_mask_comes_back_on_the_volumes_grid(weights, tmp_path, monkeypatch):
    path, _ = weights
    monkeypatch.setattr(synthstrip, "MIN_SIZE", 64)  # the real minimum (192) is slow on a CPU for a test
    volume = np.zeros((40, 50, 36), np.float32)
    volume[10:30, 12:40, 8:28] = 100.0
    mask = synthstrip_mask(volume, onnx_from_synthstrip(path, tmp_path))
    assert mask.shape == volume.shape and mask.dtype == bool


def test_weights_of_another_network_are_refused_in_one_line(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model_state_dict": {"conv.weight": torch.zeros(1)}}, path)
    with pytest.raises(BratsxError, match="these are not SynthStrip's weights") as raised:
        onnx_from_synthstrip(path, tmp_path / "cache")
    assert "\n" not in str(raised.value)
    assert not list((tmp_path / "cache").glob("*.onnx"))  # nothing exported


@pytest.mark.parametrize("value, message", [
    ("synthstrip:/nonexistent/synthstrip.1.pt", "no such weights file"),
    ("hd-bet", "choose one of deepbet, none or synthstrip:PATH"),
])
def test_bad_skull_strip_values_are_one_line(value, message, tmp_path):
    with pytest.raises(BratsxError, match=message):
        parse_skull_strip(value)
    result = CliRunner().invoke(app, ["prepare", str(tmp_path), str(tmp_path / "out"), "--skull-strip", value])
    assert result.exit_code == 2 and message in result.output


def test_good_values_are_normalised(weights):
    path, _ = weights
    assert parse_skull_strip("DeepBET") == "deepbet"
    assert parse_skull_strip(f"synthstrip:{path}") == f"synthstrip:{path}"
