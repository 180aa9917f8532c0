"""Normalisations exported as staged reductions compute what PyTorch's layers compute."""

import pytest

torch = pytest.importorskip("torch")

from torch import nn

from bratsx.export.onnx_export import StagedGroupNorm, StagedInstanceNorm3d


@pytest.mark.parametrize("affine", [True, False])
def test_staged_group_norm_is_group_norm(affine):
    torch.manual_seed(0)
    norm = nn.GroupNorm(4, 8, affine=affine)
    if affine:
        nn.init.normal_(norm.weight)
        nn.init.normal_(norm.bias)
    image = torch.randn(2, 8, 6, 7, 5) * 3 + 1
    torch.testing.assert_close(StagedGroupNorm(norm)(image), norm(image), rtol=1e-5, atol=1e-5)


def test_staged_instance_norm_is_instance_norm():
    torch.manual_seed(0)
    norm = nn.InstanceNorm3d(3, affine=True)
    nn.init.normal_(norm.weight)
    image = torch.randn(2, 3, 6, 7, 5) * 3 + 1
    torch.testing.assert_close(StagedInstanceNorm3d(norm)(image), norm(image), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm", [nn.InstanceNorm3d(32, affine=True), nn.GroupNorm(8, 32)], ids=["instance", "group"])
def test_openvino_keeps_the_staged_reductions_of_a_norm_after_a_convolution(norm, tmp_path):
    """OpenVINO merges consecutive reductions of one kind into one float32 sum over every voxel: with all-mean stages
    a convolution + instance norm over a 64^3 map was 3.5e-5 off float64 (8e-4 at 128^3); staged as they are
    exported, the error stays at float32's own level."""
    ov = pytest.importorskip("openvino")
    from bratsx.export.onnx_export import _with_staged_norms

    torch.manual_seed(0)
    network = _with_staged_norms(nn.Sequential(nn.Conv3d(4, 32, 3, padding=1), norm)).eval()
    image = torch.randn(1, 4, 64, 64, 64) * 2 + 1
    with torch.no_grad():
        reference = network.double()(image.double()).numpy()
    path = tmp_path / "norm.onnx"
    torch.onnx.export(network.float(), (image,), str(path), opset_version=18, dynamo=True, external_data=False,
                      verbose=False)
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    output = compiled(image.numpy())[0]
    relative = float(((output - reference) ** 2).sum() ** 0.5 / (reference**2).sum() ** 0.5)
    assert relative < 1e-6


def test_an_exported_staged_norm_runs_on_another_size_than_the_export_s(tmp_path):
    """The box window runs the tile's graph, its spatial axes made free, on a whole brain box: no length of the
    export may be baked into the normalisation."""
    import onnx

    ort = pytest.importorskip("onnxruntime")
    from bratsx.export.onnx_export import _with_staged_norms

    torch.manual_seed(0)
    network = _with_staged_norms(nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.InstanceNorm3d(4, affine=True)))
    network = network.eval()
    path = tmp_path / "norm.onnx"
    torch.onnx.export(network, (torch.randn(1, 2, 8, 8, 8),), str(path), opset_version=18, dynamo=True,
                      external_data=False, verbose=False)
    model = onnx.load(str(path))
    for value in (*model.graph.input, *model.graph.output):
        for dim, name in zip(value.type.tensor_type.shape.dim[2:], ("depth", "height", "width")):
            dim.Clear()
            dim.dim_param = name
    del model.graph.value_info[:]
    other = torch.randn(1, 2, 12, 16, 8) * 3 + 1
    with torch.no_grad():
        expected = network(other).numpy()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: other.numpy()})[0]
    assert abs(got - expected).max() < 1e-4
