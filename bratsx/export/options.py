"""What ``bratsx export`` writes: its options, importable without torch (the CLI's ``--help`` reads them)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

__all__ = ["DEFAULT_OPSET", "ExportOptions", "Int8Method"]

#: ONNX opset of exported models (TensorRT 10 parses up to opset 20).
DEFAULT_OPSET = 20


class Int8Method(str, Enum):
    """How the int8 model is made (:mod:`bratsx.export.int8`)."""

    PTQ = "ptq"
    ACCURACY_CONTROL = "accuracy-control"


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """What ``bratsx export`` should write.

    Attributes:
        fp16: also write ``model.fp16.onnx`` (gated on accuracy).
        trt: also build ``model.engine`` from the fp16 ONNX (gated on accuracy); implies ``fp16``.
        int8: also write ``model.int8.xml``/``.bin``, an OpenVINO IR quantized by NNCF on the calibration
            cases' tiles (gated on accuracy).
        opset: ONNX opset.
        max_batch: largest batch of tiles the graph and the engine accept.
        calibration_dir: cases to gate on (default: synthetic cases); for int8, the cases to calibrate on (with
            the model's split: its training cases there) and, without ``int8_gate_dir``, to gate on (the split's
            validation cases there).
        calibration_cases: how many cases to gate on; for int8, how many to calibrate on.
        int8_gate_dir: held-out cases the int8 gate runs on (none of them a calibration case).
        int8_method: ``ptq`` (NNCF post-training quantization) or ``accuracy-control`` (NNCF's
            ``quantize_with_accuracy_control``, validated by Dice against fp32 on the calibration cases).
        int8_keep_ends: keep the first convolution and the output head in f32.
        trt_optimization_level: TensorRT builder optimisation level (0-5).
    """

    fp16: bool = False
    trt: bool = False
    int8: bool = False
    opset: int = DEFAULT_OPSET
    max_batch: int = 8
    calibration_dir: Path | None = None
    calibration_cases: int = 2
    int8_gate_dir: Path | None = None
    int8_method: str = Int8Method.PTQ.value
    int8_keep_ends: bool = True
    trt_optimization_level: int = 3
