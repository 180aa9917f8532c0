"""FLOPs of one tile through a model file, counted once from the ONNX graph.

Convolutions and transposed convolutions are counted as two FLOPs (a multiply and an add) per
multiply-accumulate; their bias adds and the element-wise operators (normalisation, activations,
concatenation) are left out: in a 3D U-Net they are well under 1% of the work and run memory-bound,
so counting them would flatter the effective GFLOP/s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference

__all__ = ["tile_flops"]


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Static shapes of every tensor, with the batch fixed at 1."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for graph_input in model.graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].ClearField("dim_param")
            dims[0].dim_value = 1
    # data_prop: shapes computed in the graph (a GroupNorm exported as Reshape(Shape(x))) are followed too
    inferred = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    shapes = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.dim_value > 0 for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    for initializer in inferred.graph.initializer:
        shapes[initializer.name] = tuple(initializer.dims)
    return shapes


def tile_flops(model_path: Path | str) -> int:
    """FLOPs of the convolutions of one tile (batch 1) through an ONNX model.

    Raises:
        ValueError: when a convolution's shapes cannot be inferred statically.
    """
    model = onnx.load(str(model_path))
    shapes = _shapes(model)
    total = 0
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        try:
            weight = shapes[node.input[1]]
            source, result = shapes[node.input[0]], shapes[node.output[0]]
        except KeyError as missing:
            raise ValueError(f"cannot infer the shape of {missing} in node {node.name or node.op_type}") from None
        kernel = int(np.prod(weight[2:]))
        if node.op_type == "Conv":  # weight [C_out, C_in / g, k...]: one MAC per output, input channel, tap
            total += 2 * int(np.prod(result)) * weight[1] * kernel
        else:  # weight [C_in, C_out / g, k...]: one MAC per input, output channel, tap
            total += 2 * int(np.prod(source)) * weight[1] * kernel
    return total  # groups need no term: the per-group channel count is in the weight's shape
