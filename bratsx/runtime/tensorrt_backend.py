"""Running TensorRT engines (TensorRT >= 10 Python API, CUDA through ``cuda-python``).

The engine's tensors live in device buffers allocated once for the profile's largest batch; each
call copies the tiles in, runs ``execute_async_v3`` on a stream and copies the probabilities out.
Before loading, the JSON sidecar written by ``bratsx export --trt`` is compared with this machine:
an engine only runs on the TensorRT version and GPU architecture it was built for, and a mismatch
gets a message saying how to rebuild instead of a crash.

TensorRT could not be installed where bratsx is developed; this module has not been run there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BratsxError

__all__ = ["SIDECAR_SUFFIX", "TrtBackend", "import_tensorrt"]

#: Suffix of the JSON file beside an engine (``model.engine`` -> ``model.json``).
SIDECAR_SUFFIX = ".json"


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or a clear error saying how to install it."""
    try:
        import tensorrt
    except ImportError:
        raise BratsxError("TensorRT is not installed: pip install 'bratsx[trt]' (needs an NVIDIA GPU)") from None
    major = int(tensorrt.__version__.split(".")[0])
    if major < 10:
        raise BratsxError(f"TensorRT {tensorrt.__version__} is too old: bratsx needs TensorRT 10 or newer")
    return tensorrt


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise BratsxError("cuda-python is not installed: pip install 'bratsx[trt]'") from None
    return cudart


def _check(result: tuple) -> Any:
    """Unpack a cuda-python ``(error, value...)`` result, raising on a CUDA error."""
    error, *values = result
    if int(error) != 0:
        raise BratsxError(f"CUDA error {error}")
    return values[0] if len(values) == 1 else values


class TrtBackend:
    """A serialized TensorRT engine on the first CUDA GPU.

    Args:
        engine: the ``.engine`` file written by ``bratsx export --trt``.
    """

    name = "trt"

    def __init__(self, engine: Path | str) -> None:
        engine = Path(engine)
        trt = import_tensorrt()
        self.cudart = cudart = _cudart()
        if _check(cudart.cudaGetDeviceCount()) < 1:
            raise BratsxError("no CUDA GPU: TensorRT engines run on NVIDIA GPUs only")
        self.sidecar = _read_sidecar(engine)
        properties = _check(cudart.cudaGetDeviceProperties(0))
        _check_machine(engine, self.sidecar, trt.__version__, f"{properties.major}.{properties.minor}")
        gpu = properties.name.decode(errors="replace") if isinstance(properties.name, bytes) else str(properties.name)
        self.device, self.precision = f"cuda:0 ({gpu})", "fp16"

        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(engine.read_bytes())
        if self.engine is None:
            raise BratsxError(
                f"{engine}: TensorRT could not deserialize the engine; rebuild it with bratsx export --trt")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        _, _, largest = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.max_batch = int(largest[0])
        self.input_shape = tuple(int(d) for d in largest[1:])
        self.output_channels = len(self.sidecar["contract"]["channel_names"])
        self.stream = _check(cudart.cudaStreamCreate())
        item = np.dtype(np.float32).itemsize
        self.input_bytes = int(np.prod(largest)) * item
        self.output_bytes = self.max_batch * self.output_channels * int(np.prod(self.input_shape[1:])) * item
        self.input_buffer = _check(cudart.cudaMalloc(self.input_bytes))
        self.output_buffer = _check(cudart.cudaMalloc(self.output_bytes))

    @property
    def preferred_batch(self) -> int:
        return self.max_batch

    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[0] > self.max_batch:  # the profile's limit: run in chunks
            chunks = range(0, len(batch), self.max_batch)
            return np.concatenate([self.run(batch[i : i + self.max_batch]) for i in chunks])
        cudart = self.cudart
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        output = np.empty((batch.shape[0], self.output_channels, *batch.shape[2:]), dtype=np.float32)
        self.context.set_input_shape(self.input_name, batch.shape)
        self.context.set_tensor_address(self.input_name, int(self.input_buffer))
        self.context.set_tensor_address(self.output_name, int(self.output_buffer))
        host_to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        device_to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(cudart.cudaMemcpyAsync(self.input_buffer, batch.ctypes.data, batch.nbytes, host_to_device, self.stream))
        if not self.context.execute_async_v3(int(self.stream)):
            raise BratsxError("TensorRT failed to run the engine")
        _check(cudart.cudaMemcpyAsync(output.ctypes.data, self.output_buffer, output.nbytes, device_to_host,
                                      self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        return output

    def close(self) -> None:
        for buffer in (self.input_buffer, self.output_buffer):
            self.cudart.cudaFree(buffer)
        self.cudart.cudaStreamDestroy(self.stream)


def _read_sidecar(engine: Path) -> dict[str, Any]:
    sidecar = engine.with_suffix(SIDECAR_SUFFIX)
    if not sidecar.is_file():
        raise BratsxError(f"{engine}: no {sidecar.name} beside the engine; rebuild it with bratsx export --trt")
    return json.loads(sidecar.read_text())


def _check_machine(engine: Path, sidecar: dict[str, Any], tensorrt_version: str, capability: str) -> None:
    """Refuse an engine built for another TensorRT version or GPU architecture."""
    problems = []
    if sidecar["tensorrt_version"] != tensorrt_version:
        problems.append(f"TensorRT {sidecar['tensorrt_version']} (this machine: {tensorrt_version})")
    if sidecar["compute_capability"] != capability:
        problems.append(f"a GPU of compute capability {sidecar['compute_capability']} "
                        f"({sidecar['gpu_name']}; this machine: {capability})")
    if problems:
        raise BratsxError(
            f"{engine}: built for {' and '.join(problems)}; TensorRT engines do not move between versions or GPU "
            "architectures. Rebuild it here: bratsx export RUN_DIR --out DIR --fp16 --trt"
        )
