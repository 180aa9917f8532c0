"""Inference backends behind one small interface: a model file in, ``run(batch) -> probabilities`` out.

Each backend is imported lazily, so ``import bratsx.runtime`` needs none of them (and never torch);
a backend whose package is missing says which extra installs it. Open them with
:func:`bratsx.runtime.open_model`, which also picks the file a model folder holds for each backend.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Protocol

import numpy as np

from ..contract import PRECISION_METADATA_KEY
from ..errors import BratsxError

__all__ = [
    "Backend",
    "BackendBase",
    "BackendName",
    "OpenVinoBackend",
    "OrtBackend",
    "TorchBackend",
    "missing_package_error",
]


class BackendName(str, Enum):
    """The inference engines ``bratsx infer``, ``bench`` and ``serve`` can run."""

    AUTO = "auto"
    ORT = "ort"
    OPENVINO = "openvino"
    OPENVINO_BF16 = "openvino-bf16"
    TORCH = "torch"
    TRT = "trt"


class Backend(Protocol):
    """What the sliding window needs from an inference engine.

    Attributes:
        name: the backend's :class:`BackendName` value.
        device: where it computes (``cpu``, ``cuda``, ``cuda:0 (GPU name)``).
        precision: ``fp32``, ``fp16`` or ``bf16``.
        preferred_batch: tiles per call that keep the device busy.
        input_shape: the model's input shape, ``None`` for a dynamic dimension.
        output_shape: the model's output shape, likewise.
    """

    name: str
    device: str
    precision: str
    input_shape: tuple[int | None, ...]
    output_shape: tuple[int | None, ...]

    @property
    def preferred_batch(self) -> int: ...

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``(N, 4, *patch)`` tiles to float32 ``(N, C, *patch)`` probabilities."""
        ...

    def close(self) -> None:
        """Free what the backend holds (device memory, sessions); idempotent."""
        ...

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc_info: object) -> None: ...


class BackendBase:
    """Shared behaviour: a context manager that closes, and one tile per call unless on a GPU."""

    name = "base"
    device = "cpu"
    precision = "fp32"
    input_shape: tuple[int | None, ...] = ()
    output_shape: tuple[int | None, ...] = ()

    @property
    def preferred_batch(self) -> int:
        """One tile per call on a CPU (the cores are busy inside one tile), four on a GPU."""
        return 4 if self.device.startswith("cuda") else 1

    def run(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - every backend overrides it
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to free by default."""

    def __enter__(self) -> BackendBase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def missing_package_error(package: str, extra: str) -> BratsxError:
    """The error for a backend whose package is not installed."""
    return BratsxError(f"{package} is not installed: pip install 'bratsx[{extra}]'")


def _dims(shape) -> tuple[int | None, ...]:
    """A shape with symbolic or unknown dimensions as ``None``."""
    return tuple(int(d) if isinstance(d, (int, np.integer)) and int(d) > 0 else None for d in shape)


def _check_single_onnxruntime() -> None:
    """Refuse the broken state of onnxruntime and onnxruntime-gpu installed side by side."""
    from importlib import metadata

    installed = []
    for distribution in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(distribution)
            installed.append(distribution)
        except metadata.PackageNotFoundError:
            continue
    if len(installed) == 2:
        raise BratsxError(
            "both onnxruntime and onnxruntime-gpu are installed; they share one module and break each other. "
            "Keep one: pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'bratsx[gpu]' (or [cpu])"
        )


class OrtBackend(BackendBase):
    """ONNX Runtime: the CPU execution provider, or CUDA (optionally TensorRT) with onnxruntime-gpu.

    On CUDA, cuDNN's convolution algorithm search is HEURISTIC (an exhaustive search would re-run
    for every new shape) and tiles go through I/O binding: each batch is copied to the device once
    and the probabilities copied back once.

    Args:
        model: the ``.onnx`` file.
        threads: intra-op CPU threads (default: every core).
        device: ``cpu`` or ``cuda``; on ``cuda`` the session must really have loaded the CUDA provider
            (ONNX Runtime would otherwise fall back to the CPU silently).
        tensorrt: on CUDA, put ONNX Runtime's TensorRT execution provider first (explicit shape
            profiles, engine cache beside the model, fp32 unless the model file itself is fp16).
        patch: the tile size, for the TensorRT provider's profiles.
        max_batch: the largest batch of tiles run, for those profiles.
    """

    name = BackendName.ORT.value

    def __init__(self, model: Path | str, threads: int | None = None, device: str = "cpu",
                 tensorrt: bool = False, *, patch: tuple[int, int, int] | None = None, max_batch: int = 8) -> None:
        from .ort_providers import check_session_providers, ort_providers

        _check_single_onnxruntime()
        try:
            import onnxruntime as ort
        except ImportError:
            raise missing_package_error("onnxruntime", "cpu") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if tensorrt and patch is None:
            raise BratsxError("ONNX Runtime's TensorRT provider needs the model's tile size (open the model with "
                              "bratsx.runtime.open_model)")
        providers = ort_providers(ort, Path(model), device, tensorrt, max_batch, patch or (1, 1, 1))
        try:
            self.session = ort.InferenceSession(str(model), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types
            raise BratsxError(f"{model}: ONNX Runtime cannot load the model ({error})") from error
        check_session_providers(self.session, device, tensorrt)
        inputs, outputs = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.output_name = inputs.name, outputs.name
        self.input_shape, self.output_shape = _dims(inputs.shape), _dims(outputs.shape)
        self.device = device
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.precision = metadata.get(PRECISION_METADATA_KEY, "fp32")
        self._ort = ort
        self._binding = self.session.io_binding() if device == "cuda" else None

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self._binding is None:
            return self.session.run(None, {self.input_name: batch})[0]
        self._binding.bind_ortvalue_input(self.input_name, self._ort.OrtValue.ortvalue_from_numpy(batch, "cuda", 0))
        self._binding.bind_output(self.output_name, "cuda", 0)
        self.session.run_with_iobinding(self._binding)
        return self._binding.copy_outputs_to_cpu()[0]


class OpenVinoBackend(BackendBase):
    """OpenVINO on the CPU, compiling the ONNX file directly (IR brings nothing: see the README).

    Args:
        model: the ``.onnx`` file.
        threads: inference threads (default: OpenVINO's choice, every core).
        precision: ``f32`` (default; exact) or ``bf16`` (faster on CPUs with AVX512-BF16/AMX, where
            OpenVINO would otherwise pick it silently).
    """

    def __init__(self, model: Path | str, threads: int | None = None, precision: str = "f32") -> None:
        try:
            import openvino as ov
        except ImportError:
            raise missing_package_error("openvino", "openvino") from None
        if precision not in ("f32", "bf16"):
            raise BratsxError(f"OpenVINO precision must be f32 or bf16, got {precision!r}")
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = ov.Core().compile_model(str(model), "CPU", config)
        except Exception as error:  # OpenVINO raises RuntimeError subclasses with long messages
            raise BratsxError(f"{model}: OpenVINO cannot compile the model ({error})") from error
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.output(0)
        self.input_shape = self._static(self.compiled.input(0).get_partial_shape())
        self.output_shape = self._static(self.output.get_partial_shape())
        self.name = BackendName.OPENVINO_BF16.value if precision == "bf16" else BackendName.OPENVINO.value
        self.device, self.precision = "cpu", precision

    @staticmethod
    def _static(shape) -> tuple[int | None, ...]:
        return tuple(d.get_length() if d.is_static else None for d in shape)

    def run(self, batch: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.array(result[self.output], dtype=np.float32, copy=True)  # the request reuses its buffer


class TorchBackend(BackendBase):
    """PyTorch eager, from a checkpoint or run directory (imports torch only when built).

    Args:
        checkpoint: a bratsx checkpoint file or run directory.
        device: ``cpu`` or ``cuda``.
        amp: autocast (fp16 on CUDA, bf16 on CPU).
    """

    name = BackendName.TORCH.value

    def __init__(self, checkpoint: Path | str, device: str = "cpu", amp: bool = False) -> None:
        try:
            import torch
        except ImportError:
            raise missing_package_error("torch", "train") from None
        from ..trainer.checkpoint import model_from_checkpoint

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BratsxError("--device cuda asked for, but no CUDA GPU is visible")
        trained = model_from_checkpoint(checkpoint)
        self.contract = trained.contract
        self.network = trained.network.to(device)
        self.device = device
        channels = len(self.contract.modality_order)
        self.input_shape = (None, channels, *self.contract.patch_size)
        self.output_shape = (None, len(self.contract.channel_names), *self.contract.patch_size)
        self.autocast = (torch.float16 if device.startswith("cuda") else torch.bfloat16) if amp else None
        self.precision = "fp16" if self.autocast == torch.float16 else "bf16" if self.autocast else "fp32"

    def run(self, batch: np.ndarray) -> np.ndarray:
        from ..trainer.network import predict_tiles

        return predict_tiles(self.network, batch, self.contract.output_mode, self.device, self.autocast)
