import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bratsx.bench.flops import tile_flops


def single_layer_model(op: str, c_in: int, c_out: int, kernel: int, spatial: int, stride: int = 1) -> onnx.ModelProto:
    if op == "Conv":
        weight = np.zeros((c_out, c_in, kernel, kernel, kernel), np.float32)
        pads = [kernel // 2] * 6
        node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[kernel] * 3, pads=pads, strides=[stride] * 3)
    else:
        weight = np.zeros((c_in, c_out, kernel, kernel, kernel), np.float32)
        node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], kernel_shape=[kernel] * 3, strides=[stride] * 3)
    graph = helper.make_graph(
        [node], "one_layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c_in, spatial, spatial, spatial])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


@pytest.mark.parametrize(
    "op,c_in,c_out,kernel,spatial,stride,expected",
    [
        # 2 FLOPs x C_out x C_in x k^3 x output voxels
        ("Conv", 4, 32, 3, 16, 1, 2 * 32 * 4 * 27 * 16**3),
        ("Conv", 32, 64, 3, 16, 2, 2 * 64 * 32 * 27 * 8**3),  # strided: output is 8^3
        # 2 FLOPs x C_in x C_out x k^3 x input voxels
        ("ConvTranspose", 64, 32, 2, 8, 2, 2 * 64 * 32 * 8 * 8**3),
    ],
)
def test_flops_of_a_known_layer_equal_the_analytic_count(tmp_path, op, c_in, c_out, kernel, spatial, stride, expected):
    path = tmp_path / "layer.onnx"
    onnx.save(single_layer_model(op, c_in, c_out, kernel, spatial, stride), str(path))
    assert tile_flops(path) == expected


def test_the_default_network_is_counted_per_tile(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    from bratsx.network.unet import NetworkConfig, UNet3D

    network = UNet3D(NetworkConfig(features=(4, 8))).eval()
    path = tmp_path / "net.onnx"
    torch.onnx.export(network, (torch.zeros(1, 4, 16, 16, 16),), str(path), dynamo=True, verbose=False,
                      dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4)}})
    voxels, half = 16**3, 8**3
    expected = 2 * (
        voxels * 4 * 4 * 27 + voxels * 4 * 4 * 27  # stage 0: 4 -> 4 -> 4
        + half * 8 * 4 * 27 + half * 8 * 8 * 27  # stage 1: strided 4 -> 8, 8 -> 8
        + half * 8 * 4 * 8  # transposed conv 8 -> 4 (2^3 taps per input voxel)
        + voxels * 4 * 8 * 27 + voxels * 4 * 4 * 27  # decoder: 8 -> 4 -> 4
        + voxels * 3 * 4  # 1x1x1 head
    )
    assert tile_flops(path) == expected

