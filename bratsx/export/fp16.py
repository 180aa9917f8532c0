"""FP16 model files, and the accuracy gate every reduced-precision model must pass.

The fp16 ONNX keeps fp32 inputs and outputs, and keeps InstanceNormalization and the final
activation in fp32: the mean and variance over a 128^3 feature map overflow or lose precision in
fp16, a known source of broken 3D U-Nets. Everything else (convolutions, activations) runs in fp16.

The gate predicts whole cases with the fp32 and the reduced-precision model through the same
sliding window and compares their WT/TC/ET masks: the export is refused unless the Dice between
them is at least :data:`GATE_DICE` for every region of every case.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ..cases import Case, discover_cases
from ..contract import ModelContract
from ..errors import BratsxError
from ..extras import optional_import
from ..labels import REGION_ORDER
from ..metrics import dice
from ..runtime.backends import Backend
from ..runtime.runner import Runner
from ..runtime.segment import segment_case
from ..synth import write_synthetic_dataset
from .onnx_export import save_onnx_atomic, set_precision

__all__ = [
    "FP16_GATE_ARITHMETIC",
    "FP32_OPS",
    "GATE_DICE",
    "GateResult",
    "accuracy_gate",
    "calibration_cases",
    "fp16_from_onnx",
    "region_agreement",
]

#: Per-region Dice between reduced-precision and fp32 predictions an export must reach.
GATE_DICE = 0.999
#: What the fp16 gate's arithmetic is. ONNX Runtime's CPU provider runs the fp16 model's convolutions
#: through fp32 kernels on x86, so on a CPU the gate measures the rounding of weights and activations to
#: fp16, not fp16 accumulation; on CUDA the fp16 model computes in fp16 and may differ a little more.
FP16_GATE_ARITHMETIC = "ONNX Runtime CPU: fp16 weights and activations, fp32 accumulation"
#: Operators kept in fp32 in fp16 models: the normalisations (exported as staged ReduceMean with identity ReduceSum
#: between the stages, Sub, Mul, Add, Sqrt, Div, the only element-wise arithmetic in the graph) and the activation;
#: a ReduceSum left to fp16 would round the norm's partial means to fp16 between its fp32 stages.
FP32_OPS = ("InstanceNormalization", "ReduceSum", "ReduceMean", "Sub", "Mul", "Add", "Sqrt", "Div", "Sigmoid",
            "Softmax")


def fp16_from_onnx(source: Path, out: Path) -> Path:
    """Convert an fp32 bratsx model to fp16 compute with fp32 I/O, normalisation and activation.

    The contract in the metadata is carried over.
    """
    float16 = optional_import("onnxconverter_common.float16", "train")
    model = onnx.load(str(source))
    with warnings.catch_warnings():  # it reports every weight below 1e-7 it rounds up to 1e-7
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=list(FP32_OPS))
    _keep_fp32_outputs(converted)
    set_precision(converted, "fp16")
    return save_onnx_atomic(converted, out)


def _keep_fp32_outputs(model: onnx.ModelProto) -> None:
    """Undo the converter's cast of an fp32 op's output back to fp16 at the graph output.

    When a graph output comes from a blocked (fp32) operator such as the final Sigmoid,
    onnxconverter-common appends a Cast to fp16 and declares the output fp16, despite
    ``keep_io_types``; the Cast is removed so the output is the fp32 activation itself.
    """
    producers = {output: node for node in model.graph.node for output in node.output}
    for graph_output in model.graph.output:
        if graph_output.type.tensor_type.elem_type != onnx.TensorProto.FLOAT16:
            continue
        cast = producers.get(graph_output.name)
        source = producers.get(cast.input[0]) if cast is not None and cast.op_type == "Cast" else None
        if source is None or source.op_type not in FP32_OPS:
            raise BratsxError(f"fp16 conversion left output {graph_output.name!r} in fp16; cannot export fp32 I/O")
        source.output[list(source.output).index(cast.input[0])] = graph_output.name
        model.graph.node.remove(cast)
        graph_output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT


@dataclass(frozen=True)
class GateResult:
    """Worst per-region Dice between the candidate's and the fp32 model's masks over the cases (and per case)."""

    dice: dict[str, float]
    cases: int
    threshold: float = GATE_DICE
    per_case: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(value >= self.threshold for value in self.dice.values())

    def describe(self) -> str:
        scores = ", ".join(f"{region} {value:.5f}" for region, value in self.dice.items())
        return f"Dice against fp32 on {self.cases} case(s): {scores} (gate {self.threshold})"


def calibration_cases(
    contract: ModelContract, scratch: Path, calibration_dir: Path | None = None, count: int = 2, seed: int = 0
) -> list[Case]:
    """Cases to gate on: the first ``count`` readable cases of ``calibration_dir`` (with the model's channels), or
    synthetic ones (for a model of BraTS modalities only).

    Synthetic cases are written to ``scratch`` in the BraTS layout, sized at 1.5 patches (and at
    least 96 voxels) per axis, so the sliding window blends several tiles and tumours are large
    enough that a few boundary voxels do not decide the Dice; the gate then reads them as any case.
    """
    if calibration_dir is not None:
        cases = [c for c in discover_cases(calibration_dir, channels=contract.modality_order) if not c.problems][:count]
        if not cases:
            raise BratsxError(f"{calibration_dir}: no readable case to calibrate on")
        return cases
    if contract.other_channels:
        raise BratsxError(f"the model takes {', '.join(contract.other_channels).upper()}, which synthetic cases do "
                          "not have; give real cases with --calib-dir")
    shape = tuple(max(int(p * 1.5), 96) for p in reversed(contract.patch_size))  # synth takes (x, y, z)
    write_synthetic_dataset(scratch, count, shape, seed=seed)
    return discover_cases(scratch)


def accuracy_gate(
    reference: Backend, candidate: Backend, contract: ModelContract, cases: Sequence[Case]
) -> GateResult:
    """Compare the WT/TC/ET masks of two backends on whole cases (the worst case per region).

    Both segment each case through :func:`~bratsx.runtime.segment.segment_case`, the path every
    user's case takes, from the same prepared (loaded and preprocessed) input.
    """
    worst = {region.value: 1.0 for region in REGION_ORDER}
    per_case = {}
    runners = [Runner.from_backends([backend], contract) for backend in (reference, candidate)]
    for case in cases:
        prepared = runners[0].prepare(case)
        masks = [segment_case(prepared, runner).regions for runner in runners]
        per_case[case.case_id] = region_agreement(masks[1], masks[0])
        for region, value in per_case[case.case_id].items():
            worst[region] = min(worst[region], value)
    return GateResult(worst, len(cases), per_case=per_case)


def region_agreement(candidate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Per-region Dice between two boolean ``(3, z, y, x)`` WT/TC/ET masks (a gate's measure on one case)."""
    return {region.value: dice(candidate[channel], reference[channel]) for channel, region in enumerate(REGION_ORDER)}
