"""Inference backends behind one small interface: a model file in, ``run(batch) -> probabilities`` out.

Each backend is imported lazily, so ``import bratsx.runtime`` needs none of them (and never torch);
a backend whose package is missing says which extra installs it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import BratsxError

__all__ = ["PRECISION_METADATA_KEY", "Backend", "OrtBackend", "missing_package_error"]

#: Metadata key in which export records a model file's compute precision ("fp32" or "fp16").
PRECISION_METADATA_KEY = "bratsx_precision"


class Backend(Protocol):
    """What the sliding window needs from an inference engine."""

    name: str
    device: str
    precision: str

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``(N, 4, *patch)`` tiles to float32 ``(N, C, *patch)`` probabilities."""
        ...


def missing_package_error(package: str, extra: str) -> BratsxError:
    """The error for a backend whose package is not installed."""
    return BratsxError(f"{package} is not installed: pip install 'bratsx[{extra}]'")


class OrtBackend:
    """ONNX Runtime on the CPU execution provider.

    Args:
        model: the ``.onnx`` file.
        threads: intra-op threads (default: every core).
    """

    name = "ort"

    def __init__(self, model: Path | str, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise missing_package_error("onnxruntime", "cpu") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise BratsxError(f"{model}: ONNX Runtime cannot load the model ({error})") from error
        self.input_name = self.session.get_inputs()[0].name
        self.device = "cpu"
        self.precision = self.session.get_modelmeta().custom_metadata_map.get(PRECISION_METADATA_KEY, "fp32")

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
