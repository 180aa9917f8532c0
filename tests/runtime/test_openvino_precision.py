"""The ``openvino`` backend really computes in f32 on CPUs with bf16 units, and ``openvino-bf16`` in bf16.

OpenVINO's CPU plugin runs an f32 model in bf16 by default where the CPU has AVX512-BF16 or AMX; the
backend sets ``INFERENCE_PRECISION_HINT`` explicitly, and the compiled model is asked what it holds.
"""

from pathlib import Path

import numpy as np
import pytest

ov = pytest.importorskip("openvino")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from bratsx.runtime.backends import OpenVinoBackend  # noqa: E402


def _bf16_cpu() -> bool:
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.fixture(scope="module")
def two_convolutions(tmp_path_factory) -> Path:
    """A 2-convolution 3D network on 4 x 16^3 (the shape class of a bratsx model, without torch)."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.1, name)
               for name, shape in (("w1", (8, 4, 3, 3, 3)), ("w2", (3, 8, 3, 3, 3)))]
    nodes = [helper.make_node("Conv", ["image", "w1"], ["hidden"], pads=[1] * 6),
             helper.make_node("Relu", ["hidden"], ["active"]),
             helper.make_node("Conv", ["active", "w2"], ["logits"], pads=[1] * 6),
             helper.make_node("Sigmoid", ["logits"], ["probabilities"])]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                             [1, 4, 16, 16, 16])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 3, 16, 16, 16])],
                              weights)
    path = tmp_path_factory.mktemp("ov_precision") / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_the_f32_backend_compiles_with_an_f32_hint_and_runs_every_convolution_in_f32(two_convolutions):
    with OpenVinoBackend(two_convolutions, precision="f32") as backend:
        assert backend.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
        assert backend.convolution_precisions() == {"f32": 2}


def test_the_bf16_backend_compiles_with_a_bf16_hint(two_convolutions):
    if not _bf16_cpu():
        pytest.skip("this CPU has no bf16 units (AVX512-BF16 or AMX): OpenVINO runs bf16 models in f32")
    with OpenVinoBackend(two_convolutions, precision="bf16") as backend:
        assert backend.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16
        assert backend.convolution_precisions() == {"bf16": 2}


def test_without_the_hint_openvino_would_pick_bf16_on_this_cpu(two_convolutions):
    """Why the f32 backend sets the hint: OpenVINO's own default on a bf16 CPU."""
    if not _bf16_cpu():
        pytest.skip("this CPU has no bf16 units: OpenVINO's default is f32 here")
    compiled = ov.Core().compile_model(str(two_convolutions), "CPU")
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16
