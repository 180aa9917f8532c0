import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bratsx.labels import OutputMode
from bratsx.network.unet import NetworkConfig, UNet3D, probabilities

SMALL = (4, 8, 16, 32)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("mode,channels", [(OutputMode.REGIONS, 3), (OutputMode.LABELS, 4)])
def test_eval_mode_returns_one_full_resolution_output(mode, channels):
    model = UNet3D(NetworkConfig(features=SMALL, output_mode=mode)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 4, 16, 24, 32))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, channels, 16, 24, 32)


@pytest.mark.parametrize("mode,channels", [(OutputMode.REGIONS, 3), (OutputMode.LABELS, 4)])
def test_training_mode_adds_deep_supervision_at_the_three_finest_resolutions(mode, channels):
    model = UNet3D(NetworkConfig(features=SMALL, output_mode=mode)).train()
    outputs = model(torch.randn(1, 4, 32, 32, 16))
    assert [tuple(o.shape) for o in outputs] == [
        (1, channels, 32, 32, 16),
        (1, channels, 16, 16, 8),
        (1, channels, 8, 8, 4),
    ]


def test_deep_supervision_can_be_switched_off():
    model = UNet3D(NetworkConfig(features=SMALL, deep_supervision=False)).train()
    assert isinstance(model(torch.randn(1, 4, 16, 16, 16)), torch.Tensor)


def test_a_shallow_network_has_as_many_heads_as_decoder_levels():
    model = UNet3D(NetworkConfig(features=(4, 8, 16))).train()
    assert len(model(torch.randn(1, 4, 16, 16, 16))) == 2


def test_default_architecture_is_the_nnunet_brats_one():
    model = UNet3D()
    assert model.config.features == (32, 64, 128, 256)
    assert model.config.output_mode is OutputMode.REGIONS
    norms = [m for m in model.modules() if isinstance(m, torch.nn.InstanceNorm3d)]
    assert norms and all(n.affine and not n.track_running_stats for n in norms)
    slopes = {m.negative_slope for m in model.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.01}
    strided = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d) and m.stride == (2, 2, 2)]
    assert len(strided) == 3  # downsampling by strided convolution, no pooling
    assert not [m for m in model.modules() if isinstance(m, torch.nn.MaxPool3d)]


def test_config_round_trips_through_a_plain_dict():
    config = NetworkConfig(features=(8, 16), output_mode="labels")
    assert NetworkConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["output_mode"] == "labels"


def test_config_rejects_a_single_stage():
    with pytest.raises(ValueError, match="at least two"):
        NetworkConfig(features=(8,))


def test_probabilities_apply_the_output_modes_activation():
    logits = torch.randn(2, 4, 3, 3, 3)
    assert torch.allclose(probabilities(logits, OutputMode.LABELS).sum(dim=1), torch.ones(2, 3, 3, 3))
    regions = probabilities(logits[:, :3], OutputMode.REGIONS)
    assert torch.allclose(regions, torch.sigmoid(logits[:, :3]))


def test_exports_to_onnx_with_a_dynamic_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = UNet3D(NetworkConfig(features=(4, 8, 16))).eval()
    path = tmp_path / "unet.onnx"
    batch = torch.export.Dim("batch", min=1, max=16)
    torch.onnx.export(
        model, (torch.randn(2, 4, 16, 16, 16),), path, input_names=["image"], output_names=["logits"],
        dynamic_shapes={"x": {0: batch}}, dynamo=True, verbose=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        x = torch.randn(n, 4, 16, 16, 16)
        with torch.no_grad():
            expected = model(x).numpy()
        [got] = session.run(None, {"image": x.numpy()})
        assert got.shape == (n, 3, 16, 16, 16)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
