"""Running TensorRT engines (TensorRT >= 10 Python API, CUDA through ``cuda-python``).

The engine's input and output each get one device buffer and one pinned host buffer, allocated once
for the largest batch of the engine's optimisation profile, in the dtypes the engine declares. Each
call checks the tiles against the engine (shape and batch size), asks TensorRT to accept the shape
(``set_input_shape`` answers with a bool), reads the output shape back from the execution context,
copies exactly the bytes of that batch through the pinned buffers and runs ``execute_async_v3`` on
its own stream. Tiles of the wrong size are refused with a message, never copied.

Before loading, the JSON sidecar written by ``bratsx export --trt`` beside the engine
(``model.engine.json``, apart from the model folder's ``model.json``) is compared with this machine
(an engine only runs on the TensorRT version and GPU architecture it was built for), and the model
contract stored in the sidecar is checked against the engine's own tensor shapes: the sidecar's
contract is the engine's contract (:attr:`TrtBackend.contract`), the one to segment with.

No GPU or TensorRT exists where bratsx is developed: this module's control flow is tested against
stand-ins (``tests/gpu_fakes``) that enforce TensorRT's and CUDA's contracts, not on real hardware.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import ModelContract
from ..errors import BratsxError
from ..extras import optional_import
from .backends import BackendBase, BackendName
from .cuda_runtime import CudaRuntime, pinned_array

__all__ = ["TrtBackend", "import_tensorrt", "read_sidecar", "sidecar_path"]

#: What a sidecar must record for the engine to be checked and run.
_SIDECAR_KEYS = ("tensorrt_version", "gpu_name", "compute_capability", "contract")
#: I/O dtypes the runner can feed and read (bratsx engines keep fp32 I/O; fp16 I/O is accepted).
_IO_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or a clear error saying how to install it."""
    tensorrt = optional_import("tensorrt", "trt")  # needs an NVIDIA GPU
    major = int(tensorrt.__version__.split(".")[0])
    if major < 10:
        raise BratsxError(f"TensorRT {tensorrt.__version__} is too old: bratsx needs TensorRT 10 or newer")
    return tensorrt


def sidecar_path(engine: Path) -> Path:
    """The build record beside ``engine``: ``model.engine`` -> ``model.engine.json``."""
    return engine.with_name(engine.name + ".json")


def read_sidecar(engine: Path) -> dict[str, Any]:
    """The build record written beside ``engine``.

    Raises:
        BratsxError: the sidecar is missing or unreadable.
    """
    sidecar = sidecar_path(engine)
    if not sidecar.is_file():
        raise BratsxError(f"{engine}: no {sidecar.name} beside the engine; rebuild it with bratsx export --trt")
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BratsxError(f"{sidecar}: unreadable engine sidecar ({error}); rebuild it with bratsx export --trt"
                          ) from error
    missing = [key for key in _SIDECAR_KEYS if not isinstance(record, dict) or key not in record]
    if missing:
        raise BratsxError(f"{sidecar}: not an engine sidecar (no {', '.join(missing)}); "
                          "rebuild the engine with bratsx export --trt")
    return record


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


def _sidecar_contract(engine: Path, sidecar: dict[str, Any]) -> ModelContract:
    try:
        return ModelContract.from_dict(sidecar["contract"])
    except (KeyError, TypeError, ValueError) as error:
        raise BratsxError(f"{engine}: the sidecar holds no valid model contract ({error}); "
                          "rebuild with bratsx export --trt") from error


@dataclass
class _Binding:
    """One engine tensor: a device buffer and the pinned host buffer it is copied through, both sized for
    the profile's largest batch (``max_shape``)."""

    name: str
    dtype: np.dtype
    max_shape: tuple[int, ...]
    device: int = 0
    host: int = 0

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.max_shape)) * self.dtype.itemsize

    def host_view(self, count: int) -> np.ndarray:
        """The pinned host buffer's first ``count`` samples."""
        return pinned_array(self.host, self.max_shape, self.dtype)[:count]


def _dims(dims: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in dims)


def _dtype(trt: Any, engine: Any, name: str, path: Path) -> np.dtype:
    declared = engine.get_tensor_dtype(name)
    try:
        dtype = np.dtype(trt.nptype(declared))
    except TypeError:
        dtype = None
    if dtype not in _IO_DTYPES:
        raise BratsxError(f"{path}: tensor {name!r} is {declared}; bratsx runs engines with float32 or float16 I/O")
    return dtype


def _bindings(trt: Any, engine: Any, context: Any, path: Path, contract: ModelContract) -> tuple[_Binding, _Binding]:
    """The engine's input and output, checked against the sidecar's contract."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    if len(inputs) != 1 or len(outputs) != 1:
        raise BratsxError(f"{path}: the engine has {len(inputs)} input(s) and {len(outputs)} output(s), a bratsx "
                          "engine one of each; rebuild it with bratsx export --trt")
    largest = _dims(engine.get_tensor_profile_shape(inputs[0], 0)[2])
    tile = (len(contract.modality_order), *contract.patch_size)
    if largest[1:] != tile:
        raise BratsxError(f"{path}: the engine takes tiles {largest[1:]}, but the contract beside it says {tile}; "
                          "the sidecar does not describe this engine: rebuild it with bratsx export --trt")
    if not context.set_input_shape(inputs[0], largest):
        raise BratsxError(f"{path}: TensorRT refuses the engine's own largest input shape {largest}; rebuild it")
    produced = _dims(context.get_tensor_shape(outputs[0]))
    expected = (largest[0], len(contract.channel_names), *contract.patch_size)
    if produced != expected:
        raise BratsxError(f"{path}: the engine outputs {produced} for {largest}, the contract implies {expected}; "
                          "rebuild it with bratsx export --trt")
    return (_Binding(inputs[0], _dtype(trt, engine, inputs[0], path), largest),
            _Binding(outputs[0], _dtype(trt, engine, outputs[0], path), produced))


class TrtBackend(BackendBase):
    """A serialized TensorRT engine on the first CUDA GPU.

    Attributes:
        contract: the model contract stored beside the engine, checked against the engine's shapes.
        sidecar: the whole build record (TensorRT version, GPU, profile, contract).

    Args:
        engine: the ``.engine`` file written by ``bratsx export --trt``.

    Raises:
        BratsxError: TensorRT or cuda-python missing, no usable GPU or driver, an engine built on
            another TensorRT or GPU architecture, or a sidecar that does not describe the engine.
    """

    name = BackendName.TRT.value
    runs_any_shape = False  # an engine runs the tile shape it was built for

    def __init__(self, engine: Path | str) -> None:
        self.path = Path(engine)
        self._bindings: tuple[_Binding, ...] = ()
        self._stream: Any = None
        trt = import_tensorrt()
        self._cuda = CudaRuntime.load()
        gpu = self._cuda.gpu()
        self.sidecar = read_sidecar(self.path)
        _check_machine(self.path, self.sidecar, trt.__version__, gpu.compute_capability)
        self.contract = _sidecar_contract(self.path, self.sidecar)
        self.device, self.precision = f"cuda:0 ({gpu.name})", "fp16"

        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)  # kept alive as long as the engine
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise BratsxError(
                f"{self.path}: TensorRT could not deserialize the engine; rebuild it with bratsx export --trt")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BratsxError(f"{self.path}: TensorRT could not create an execution context (GPU memory full?)")
        self._input, self._output = _bindings(trt, self.engine, self.context, self.path, self.contract)
        self.input_shape = (None, *self._input.max_shape[1:])
        self.output_shape = (None, *self._output.max_shape[1:])
        try:
            self._allocate()
        except BaseException:
            self.close()
            raise

    def _allocate(self) -> None:
        cuda = self._cuda
        self._stream = cuda.create_stream()
        for binding in (self._input, self._output):
            self._bindings += (binding,)
            binding.device = cuda.malloc(binding.nbytes)
            binding.host = cuda.malloc_host(binding.nbytes)
            if not self.context.set_tensor_address(binding.name, binding.device):
                raise BratsxError(f"{self.path}: TensorRT refused the buffer of tensor {binding.name!r}")

    @property
    def max_batch(self) -> int:
        """The largest batch of the engine's optimisation profile."""
        return self._input.max_shape[0]

    @property
    def preferred_batch(self) -> int:
        """The batch the engine's profile was tuned for (bratsx builds it for its largest batch)."""
        return self.max_batch

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for ``(N, C, *patch)`` tiles, in chunks of at most :attr:`max_batch`.

        Raises:
            BratsxError: tiles of another shape than the engine's, or a TensorRT or CUDA failure.
        """
        batch = np.asarray(batch)
        tile = self._input.max_shape[1:]
        if batch.ndim != 1 + len(tile) or batch.shape[1:] != tile:
            raise BratsxError(f"{self.path}: the engine takes tiles of shape (N, {', '.join(map(str, tile))}), "
                              f"got {batch.shape}")
        if len(batch) == 0:
            return np.empty((0, *self._output.max_shape[1:]), dtype=np.float32)
        if len(batch) > self.max_batch:
            chunks = range(0, len(batch), self.max_batch)
            return np.concatenate([self._run_batch(batch[i : i + self.max_batch]) for i in chunks])
        return self._run_batch(batch)

    def _run_batch(self, batch: np.ndarray) -> np.ndarray:
        cuda, count = self._cuda, len(batch)
        if not self.context.set_input_shape(self._input.name, batch.shape):
            raise BratsxError(f"{self.path}: TensorRT refused input shape {batch.shape} "
                              f"(the engine's profile allows batches 1..{self.max_batch})")
        produced = _dims(self.context.get_tensor_shape(self._output.name))
        if produced != (count, *self._output.max_shape[1:]):
            raise BratsxError(f"{self.path}: the engine would write output {produced} for input {batch.shape}")
        host_in, host_out = self._input.host_view(count), self._output.host_view(count)
        np.copyto(host_in, batch, casting="same_kind")
        cuda.to_device(self._input.device, self._input.host, host_in.nbytes, self._stream)
        if not self.context.execute_async_v3(cuda.handle(self._stream)):
            raise BratsxError(f"{self.path}: TensorRT failed to run the engine (see the TensorRT log above)")
        cuda.to_host(self._output.host, self._output.device, host_out.nbytes, self._stream)
        cuda.synchronize(self._stream)
        return host_out.astype(np.float32, copy=True)  # the pinned buffer is reused by the next call

    def close(self) -> None:
        """Free the device and pinned buffers and the stream; idempotent."""
        for binding in self._bindings:
            if binding.device:
                self._cuda.free(binding.device)
                binding.device = 0
            if binding.host:
                self._cuda.free_host(binding.host)
                binding.host = 0
        if self._stream is not None:
            self._cuda.destroy_stream(self._stream)
            self._stream = None
