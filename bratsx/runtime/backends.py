"""Inference backends behind one small interface: a model file in, ``run(batch) -> probabilities`` out.

Each backend is imported lazily, so ``import bratsx.runtime`` needs none of them (and never torch);
a backend whose package is missing says which extra installs it. Open them with
:func:`bratsx.runtime.open_model`, which also picks the file a model folder holds for each backend.

Besides tiles of the model's patch, the ONNX Runtime, OpenVINO and PyTorch backends run one volume of any
spatial shape the network divides (``--window box``): OpenVINO reshapes and compiles the model once per
shape, ONNX Runtime opens a second session on the same graph with symbolic spatial axes (the exported
graph holds no spatial size: convolutions, staged normalisations, concatenations). TensorRT engines run
their tile shape only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

import numpy as np

from ..contract import PRECISION_METADATA_KEY
from ..errors import BratsxError
from ..extras import optional_import

__all__ = [
    "Backend",
    "BackendBase",
    "BackendName",
    "OpenVinoBackend",
    "OrtBackend",
    "TorchBackend",
    "TorchOptions",
]


class BackendName(str, Enum):
    """The inference engines ``bratsx infer``, ``bench`` and ``serve`` can run."""

    AUTO = "auto"
    ORT = "ort"
    OPENVINO = "openvino"
    OPENVINO_BF16 = "openvino-bf16"
    OPENVINO_INT8 = "openvino-int8"
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
        runs_any_shape: ``run`` also takes one volume of any spatial shape the network divides
            (``--window box``); ``False`` for engines built for their tile shape (TensorRT).

    Thread safety: ``run`` may NOT be called from two threads at once on the same backend. OpenVINO reuses
    one infer request and ONNX Runtime on CUDA one I/O binding, so concurrent calls could mix their
    outputs. A caller running cases concurrently (the web app's job threads) opens one backend per
    thread, or serialises the calls.
    """

    name: str
    device: str
    precision: str
    input_shape: tuple[int | None, ...]
    output_shape: tuple[int | None, ...]
    runs_any_shape: bool

    @property
    def preferred_batch(self) -> int: ...

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``(N, 4, *patch)`` tiles to float32 ``(N, C, *patch)`` probabilities (or one volume of
        another shape the network divides, where the backend supports it)."""
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
    runs_any_shape = True

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
        ort = optional_import("onnxruntime", "cpu")
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
        self._ort, self._model, self._options, self._providers = ort, Path(model), options, providers
        self._binding = self.session.io_binding() if device == "cuda" else None
        self._any_shape: tuple | None = None  # (session, binding) taking any spatial shape, opened on first use

    def _any_shape_session(self) -> tuple:
        """A session on the same graph with symbolic spatial axes (for a whole brain box)."""
        if self._any_shape is None:
            import onnx

            model = onnx.load(str(self._model))
            for value in (*model.graph.input, *model.graph.output):
                for dim, name in zip(value.type.tensor_type.shape.dim[2:], ("depth", "height", "width")):
                    dim.Clear()
                    dim.dim_param = name
            del model.graph.value_info[:]  # inferred shapes of the tile size
            session = self._ort.InferenceSession(model.SerializeToString(), self._options, providers=self._providers)
            self._any_shape = (session, session.io_binding() if self._binding is not None else None)
        return self._any_shape

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        session, binding = self.session, self._binding
        if any(want is not None and got != want for got, want in zip(batch.shape[2:], self.input_shape[2:])):
            session, binding = self._any_shape_session()
        if binding is None:
            return session.run(None, {self.input_name: batch})[0]
        binding.bind_ortvalue_input(self.input_name, self._ort.OrtValue.ortvalue_from_numpy(batch, "cuda", 0))
        binding.bind_output(self.output_name, "cuda", 0)
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


class OpenVinoBackend(BackendBase):
    """OpenVINO on the CPU, compiling the ONNX file directly (IR brings nothing: see the README), or the
    int8 IR that ``bratsx export --int8`` writes.

    Args:
        model: the ``.onnx`` file, or the int8 model's ``.xml``.
        threads: inference threads (default: OpenVINO's choice, every core).
        precision: ``f32`` (default; exact), ``bf16`` (faster on CPUs with AVX512-BF16/AMX) or ``int8`` (the
            quantized IR: its quantized convolutions run in int8, the rest in f32). The inference precision
            hint is always set, to f32 for ``f32`` and ``int8``: on CPUs with AVX512-BF16 or AMX, OpenVINO's
            default would otherwise run the f32 model in bf16 silently (:meth:`convolution_precisions` says
            what runs).
    """

    #: Compiled shapes kept besides the tile's (a directory of brain boxes compiles one per case).
    KEPT_SHAPES = 2

    def __init__(self, model: Path | str, threads: int | None = None, precision: str = "f32") -> None:
        ov = optional_import("openvino", "openvino")
        if precision not in ("f32", "bf16", "int8"):
            raise BratsxError(f"OpenVINO precision must be f32, bf16 or int8, got {precision!r}")
        self._config = {"INFERENCE_PRECISION_HINT": "f32" if precision == "int8" else precision,
                        "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            # A thread budget means other processes share the cores (bratsx infer --workers): OpenVINO would
            # pin every process's threads to the same first cores (two 1-thread workers on a 2-core machine
            # both ran on core 0, each at half speed), so pinning is left to the operating system.
            self._config["INFERENCE_NUM_THREADS"] = threads
            self._config["ENABLE_CPU_PINNING"] = False
        self._core, self._path = ov.Core(), Path(model)
        self.compiled = self._compile(None)
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.output(0)
        self.input_shape = self._static(self.compiled.input(0).get_partial_shape())
        self.output_shape = self._static(self.output.get_partial_shape())
        self._other_shapes: dict[tuple[int, ...], tuple] = {}
        names = {"f32": BackendName.OPENVINO, "bf16": BackendName.OPENVINO_BF16, "int8": BackendName.OPENVINO_INT8}
        self.name = names[precision].value
        self.device, self.precision = "cpu", precision

    def convolution_precisions(self) -> dict[str, int]:
        """How many of the compiled model's convolutions run in each precision (``f32``, ``bf16``, ``u8``...), as
        the CPU plugin chose them: what the backend really executes, whatever its hint asked."""
        counts: dict[str, int] = {}
        for node in self.compiled.get_runtime_model().get_ops():
            info = node.get_rt_info()
            if info["layerType"].astype(str) in ("Convolution", "Deconvolution"):
                runtime = info["runtimePrecision"].astype(str)
                counts[runtime] = counts.get(runtime, 0) + 1
        return counts

    def _compile(self, shape: tuple[int, ...] | None):
        """The model compiled for the CPU, reshaped first to ``shape`` when given."""
        try:
            if shape is None:
                return self._core.compile_model(str(self._path), "CPU", self._config)
            model = self._core.read_model(str(self._path))
            model.reshape({model.input(0): list(shape)})
            return self._core.compile_model(model, "CPU", self._config)
        except Exception as error:  # OpenVINO raises RuntimeError subclasses with long messages
            at = f" for input shape {shape}" if shape else ""
            raise BratsxError(f"{self._path}: OpenVINO cannot compile the model{at} ({error})") from error

    @staticmethod
    def _static(shape) -> tuple[int | None, ...]:
        return tuple(d.get_length() if d.is_static else None for d in shape)

    def _request_for(self, shape: tuple[int, ...]) -> tuple:
        """The infer request and output port for an input of ``shape``."""
        if all(want is None or got == want for got, want in zip(shape[2:], self.input_shape[2:])):
            return self.request, self.output
        if shape not in self._other_shapes:
            while len(self._other_shapes) >= self.KEPT_SHAPES:
                self._other_shapes.pop(next(iter(self._other_shapes)))
            compiled = self._compile(shape)
            self._other_shapes[shape] = (compiled.create_infer_request(), compiled.output(0))
        return self._other_shapes[shape]

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        request, output = self._request_for(tuple(batch.shape))
        result = request.infer({0: batch})
        return np.array(result[output], dtype=np.float32, copy=True)  # the request reuses its buffer


@dataclass(frozen=True, kw_only=True)
class TorchOptions:
    """How the PyTorch backend runs the network.

    Attributes:
        amp: autocast (fp16 on CUDA, bf16 on CPU).
        channels_last: ``channels_last_3d`` memory format for the network and its inputs (faster cuDNN
            convolutions with fp16 on recent GPUs).
        compile: ``torch.compile`` the network (Inductor; compiled once per input shape).
        cuda_graphs: with ``compile`` on CUDA, replay CUDA graphs (``mode="reduce-overhead"``), which removes
            the per-kernel launch cost of small batches.
    """

    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False


class TorchBackend(BackendBase):
    """PyTorch eager (or compiled), from a checkpoint or run directory (imports torch only when built).

    Args:
        checkpoint: a bratsx checkpoint file or run directory, or an imported model folder (its networks rebuilt
            from the source it records: :func:`bratsx.network.nnunet.trained_from_import`).
        device: ``cpu`` or ``cuda``.
        amp: autocast (fp16 on CUDA, bf16 on CPU); the same as ``options.amp``.
        options: memory format and compilation (see :class:`TorchOptions`).
    """

    name = BackendName.TORCH.value

    def __init__(self, checkpoint: Path | str, device: str = "cpu", amp: bool = False,
                 options: TorchOptions | None = None) -> None:
        torch = optional_import("torch", "train")
        from ..modelfolder import find_model_folder
        from ..network.checkpoint import model_from_checkpoint

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BratsxError("--device cuda asked for, but no CUDA GPU is visible")
        options = options or TorchOptions()
        amp = amp or options.amp
        folder = find_model_folder(checkpoint) if Path(checkpoint).is_dir() else None
        if folder is not None and folder.imported_from:
            from ..network.nnunet import trained_from_import

            trained = trained_from_import(folder)
        else:
            trained = model_from_checkpoint(checkpoint)
        self.contract = trained.contract
        self.network = trained.network.to(device)
        if options.channels_last:  # weights and every input in channels_last_3d
            self.network = self.network.to(memory_format=torch.channels_last_3d)
            self.network.register_forward_pre_hook(
                lambda module, args: (args[0].contiguous(memory_format=torch.channels_last_3d),))
        if options.compile:
            mode = "reduce-overhead" if options.cuda_graphs and device.startswith("cuda") else None
            self.network = torch.compile(self.network, mode=mode)
        self.device = device
        channels = len(self.contract.modality_order)
        self.input_shape = (None, channels, *self.contract.patch_size)
        self.output_shape = (None, len(self.contract.channel_names), *self.contract.patch_size)
        self.autocast = (torch.float16 if device.startswith("cuda") else torch.bfloat16) if amp else None
        self.precision = "fp16" if self.autocast == torch.float16 else "bf16" if self.autocast else "fp32"

    def run(self, batch: np.ndarray) -> np.ndarray:
        from ..network.unet import predict_tiles

        return predict_tiles(self.network, batch, self.contract.output_mode, self.device, self.autocast,
                             self.contract.activated)
