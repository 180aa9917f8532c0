"""What ``bratsx export`` writes: its options, importable without torch (the CLI's ``--help`` reads them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_OPSET", "ExportOptions"]

#: ONNX opset of exported models (TensorRT 10 parses up to opset 20).
DEFAULT_OPSET = 20


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
        calibration_dir: cases to gate on (default: synthetic cases).
        calibration_cases: how many cases to gate on.
        trt_optimization_level: TensorRT builder optimisation level (0-5).
    """

    fp16: bool = False
    trt: bool = False
    int8: bool = False
    opset: int = DEFAULT_OPSET
    max_batch: int = 8
    calibration_dir: Path | None = None
    calibration_cases: int = 2
    trt_optimization_level: int = 3
