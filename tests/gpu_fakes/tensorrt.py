"""A stand-in for the ``tensorrt`` Python package (TensorRT >= 10 API): a control-flow double.

What it enforces, as TensorRT documents it:

- Builder: a network created STRONGLY_TYPED; ``set_shape`` raises when min > opt or opt > max; a profile
  whose static dimensions differ from the network's is invalid (``add_optimization_profile`` -> -1);
  every dynamic input needs a profile; ``create_timing_cache`` returns ``None`` for bytes it cannot
  read; ``set_timing_cache(cache, ignore_mismatch=False)`` returns ``False`` for a cache made on
  another GPU, and then ``get_timing_cache()`` returns ``None``.
- Runtime: ``deserialize_cuda_engine`` returns ``None`` for an engine of another TensorRT version or
  GPU; ``set_input_shape`` returns ``False`` for a shape outside the profile; ``set_tensor_address``
  and ``execute_async_v3`` need device memory and a live stream's integer handle.

The "engine" is a JSON record naming the ONNX it was built from; executing it reads the input from
fake device memory, runs ONNX Runtime's CPU provider on that ONNX, and writes the output back, with
every read and write bounds-checked. Its numbers are ONNX Runtime's, not TensorRT's.
"""

from __future__ import annotations

import enum
import importlib.machinery
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx

from .cuda import FakeCudaRuntime, FakeGpuMisuse

__all__ = ["FakeTensorRT", "install_tensorrt"]

_MAGIC = "bratsx-fake-tensorrt-engine"


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3


_NUMPY = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32}
_FROM_ONNX = {onnx.TensorProto.FLOAT: DataType.FLOAT, onnx.TensorProto.FLOAT16: DataType.HALF}


def nptype(dtype: DataType) -> type:
    return _NUMPY[DataType(dtype)]


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 1


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class Logger:
    WARNING = 2

    def __init__(self, severity: int = WARNING) -> None:
        self.severity = severity
        self.messages: list[str] = []


def _tensors(values) -> list[dict[str, Any]]:
    return [{"name": v.name, "dtype": int(_FROM_ONNX[v.type.tensor_type.elem_type]),
             "shape": [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]}
            for v in values]


class _Tensor:
    def __init__(self, record: dict[str, Any]) -> None:
        self.name, self.shape, self.dtype = record["name"], tuple(record["shape"]), DataType(record["dtype"])


class _Network:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs: list[dict[str, Any]] = []
        self.outputs: list[dict[str, Any]] = []
        self.onnx: str | None = None

    num_inputs = property(lambda self: len(self.inputs))
    num_outputs = property(lambda self: len(self.outputs))

    def get_input(self, index: int) -> _Tensor:
        return _Tensor(self.inputs[index])

    def get_output(self, index: int) -> _Tensor:
        return _Tensor(self.outputs[index])


class _Parser:
    def __init__(self, network: _Network, logger: Logger) -> None:
        self.network, self.errors = network, []

    def parse_from_file(self, path: str) -> bool:
        try:
            model = onnx.load(path)
        except Exception as error:  # noqa: BLE001 - the real parser reports any failure as False
            self.errors.append(f"cannot read {path}: {error}")
            return False
        initializers = {i.name for i in model.graph.initializer}
        self.network.inputs = _tensors(v for v in model.graph.input if v.name not in initializers)
        self.network.outputs = _tensors(model.graph.output)
        self.network.onnx = str(Path(path).resolve())
        return True

    num_errors = property(lambda self: len(self.errors))

    def get_error(self, index: int) -> str:
        return self.errors[index]


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, name: str, minimum, optimum, maximum) -> None:
        shapes = tuple(tuple(int(d) for d in s) for s in (minimum, optimum, maximum))
        if len({len(s) for s in shapes}) != 1:
            raise RuntimeError("Shape provided for opt is inconsistent with other shapes.")
        for low, high, which in ((shapes[0], shapes[1], "opt"), (shapes[1], shapes[2], "max")):
            if any(a > b for a, b in zip(low, high)):
                raise RuntimeError(f"Shape provided for {which} is inconsistent with other shapes.")
        self.shapes[name] = shapes


class _TimingCache:
    def __init__(self, device: str, version: str, entries: int = 0) -> None:
        self.device, self.version, self.entries = device, version, entries

    def serialize(self) -> bytes:
        return json.dumps({"device": self.device, "version": self.version, "entries": self.entries}).encode()


class _Config:
    def __init__(self, trt: FakeTensorRT) -> None:
        self.trt, self.profiles, self.timing_cache, self.pool = trt, [], None, None
        self.builder_optimization_level = 3

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        self.pool = (MemoryPoolType(pool), int(size))

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized: bytes) -> _TimingCache | None:
        if not serialized:
            return _TimingCache(self.trt.device_key, self.trt.version)
        try:
            record = json.loads(bytes(serialized))
            return _TimingCache(record["device"], record["version"], record["entries"])
        except (ValueError, KeyError, TypeError):
            return None  # TensorRT logs the error and returns no cache

    def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> bool:
        if (cache.device, cache.version) != (self.trt.device_key, self.trt.version) and not ignore_mismatch:
            return False
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> _TimingCache | None:
        return self.timing_cache


class _Builder:
    def __init__(self, trt: FakeTensorRT, logger: Logger) -> None:
        self.trt = trt

    def create_network(self, flags: int) -> _Network:
        return _Network(flags)

    def create_builder_config(self) -> _Config:
        return _Config(self.trt)

    def create_optimization_profile(self) -> _Profile:
        return _Profile()

    def build_serialized_network(self, network: _Network, config: _Config) -> bytes | None:
        if not network.flags & (1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED):
            raise FakeGpuMisuse("bratsx builds strongly typed networks; this one is weakly typed")
        if not 0 <= config.builder_optimization_level <= 5 or len(config.profiles) != 1:
            return None
        shapes = config.profiles[0].shapes
        for tensor in network.inputs:
            if tensor["name"] not in shapes:
                return None  # a dynamic input without a profile
            for shape in shapes[tensor["name"]]:
                if len(shape) != len(tensor["shape"]) or any(d != s for d, s in zip(tensor["shape"], shape) if d >= 0):
                    return None
        if config.timing_cache is not None:
            config.timing_cache.entries += 1
        self.trt.builds.append({"profile": {k: [list(s) for s in v] for k, v in shapes.items()},
                                "timing_cache": config.timing_cache})
        return json.dumps({"magic": _MAGIC, "version": self.trt.version, "device": self.trt.device_key,
                           "onnx": network.onnx, "inputs": network.inputs, "outputs": network.outputs,
                           "profile": {k: [list(s) for s in v] for k, v in shapes.items()}}).encode()


class _Engine:
    def __init__(self, trt: FakeTensorRT, record: dict[str, Any]) -> None:
        self.trt, self.record = trt, record
        self.tensors = {t["name"]: (TensorIOMode.INPUT, t) for t in record["inputs"]}
        self.tensors.update({t["name"]: (TensorIOMode.OUTPUT, t) for t in record["outputs"]})
        self.names = list(self.tensors)
        self.num_optimization_profiles = 1
        self._session = None

    num_io_tensors = property(lambda self: len(self.names))

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self.tensors[name][0]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.tensors[name][1]["shape"])

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType(self.tensors[name][1]["dtype"])

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
        return [tuple(s) for s in self.record["profile"][name]]

    def create_execution_context(self) -> _Context:
        return _Context(self)

    def session(self):
        if self._session is None:
            import onnxruntime

            self._session = onnxruntime.InferenceSession(self.record["onnx"], providers=["CPUExecutionProvider"])
        return self._session


class _Context:
    def __init__(self, engine: _Engine) -> None:
        self.engine, self.shapes, self.addresses = engine, {}, {}

    def set_input_shape(self, name: str, shape) -> bool:
        shape = tuple(int(d) for d in shape)
        low, _, high = self.engine.record["profile"][name]
        if len(shape) != len(low) or any(not a <= s <= b for a, s, b in zip(low, shape, high)):
            return False  # TensorRT logs "... is out of the profile" and refuses
        self.shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        mode, tensor = self.engine.tensors[name]
        if mode == TensorIOMode.INPUT:
            return self.shapes.get(name, tuple(tensor["shape"]))
        inputs = [n for n, (m, _) in self.engine.tensors.items() if m == TensorIOMode.INPUT]
        if any(n not in self.shapes for n in inputs):
            return tuple(tensor["shape"])  # still dynamic
        return (self.shapes[inputs[0]][0], *tensor["shape"][1:])

    def set_tensor_address(self, name: str, address: int) -> bool:
        if name not in self.engine.tensors:
            return False
        self.engine.trt.gpu.device_view(int(address), 1)  # must be device memory
        self.addresses[name] = int(address)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        if not isinstance(stream_handle, int):
            raise FakeGpuMisuse(f"execute_async_v3 takes the stream's integer handle, got {stream_handle!r}")
        gpu = self.engine.trt.gpu
        gpu.stream_handle(stream_handle)
        if set(self.addresses) != set(self.engine.tensors) or set(self.shapes) != {
                n for n, (m, _) in self.engine.tensors.items() if m == TensorIOMode.INPUT}:
            return False  # TensorRT: not all addresses or input shapes are set
        feeds = {}
        for name, shape in self.shapes.items():
            dtype = np.dtype(nptype(self.engine.get_tensor_dtype(name)))
            raw = gpu.device_view(self.addresses[name], int(np.prod(shape)) * dtype.itemsize)
            feeds[name] = np.frombuffer(raw, dtype=dtype).reshape(shape)
        for name, value in zip([o.name for o in self.engine.session().get_outputs()],
                               self.engine.session().run(None, feeds)):
            shape, dtype = self.get_tensor_shape(name), np.dtype(nptype(self.engine.get_tensor_dtype(name)))
            if tuple(value.shape) != shape:
                raise FakeGpuMisuse(f"output {name} is {value.shape}, the context said {shape}")
            gpu.device_view(self.addresses[name], value.nbytes)[:] = value.astype(dtype).tobytes()
        self.engine.trt.executions += 1
        return True


class _Runtime:
    def __init__(self, trt: FakeTensorRT, logger: Logger) -> None:
        self.trt = trt

    def deserialize_cuda_engine(self, serialized: bytes) -> _Engine | None:
        try:
            record = json.loads(bytes(serialized))
        except ValueError:
            return None
        if record.get("magic") != _MAGIC or (record["version"], record["device"]) != (
                self.trt.version, self.trt.device_key):
            return None  # another TensorRT version or GPU: TensorRT logs an error and returns no engine
        return _Engine(self.trt, record)


class FakeTensorRT:
    """The state behind a fake ``tensorrt`` module: its version, the fake GPU and what it did.

    Args:
        gpu: the fake CUDA runtime whose memory and streams engines use.
        version: ``tensorrt.__version__``.
    """

    def __init__(self, gpu: FakeCudaRuntime, version: str = "10.13.0.35") -> None:
        self.gpu, self.version = gpu, version
        self.builds: list[dict[str, Any]] = []
        self.executions = 0

    @property
    def device_key(self) -> str:
        return f"{self.gpu.properties.name.decode()} sm_{self.gpu.properties.major}{self.gpu.properties.minor}"

    def as_module(self) -> ModuleType:
        module = ModuleType("tensorrt")
        module.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # importlib.util.find_spec finds it
        module.__version__ = self.version
        module.Logger = Logger
        module.Builder = lambda logger: _Builder(self, logger)
        module.Runtime = lambda logger: _Runtime(self, logger)
        module.OnnxParser = _Parser
        for value in (DataType, TensorIOMode, NetworkDefinitionCreationFlag, MemoryPoolType, nptype):
            setattr(module, value.__name__, value)
        return module


def install_tensorrt(monkeypatch, trt: FakeTensorRT) -> None:
    """Make ``import tensorrt`` import the stand-in."""
    monkeypatch.setitem(sys.modules, "tensorrt", trt.as_module())
