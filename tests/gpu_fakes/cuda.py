"""A stand-in for ``cuda.bindings.runtime`` (cuda-python): a control-flow double, not a GPU.

Device memory is a set of bytearrays at fake addresses above 2**48 (never valid host addresses), so
a device pointer used as a host pointer cannot silently work. Pinned host memory is real host memory
(ctypes buffers) at real addresses, so the code under test can view it with NumPy. Every copy is
bounds-checked on both sides and must name a live stream; host memory must be pinned. Calls return
``(error, value...)`` tuples exactly as cuda-python does, and device queries can be made to fail with
the driver errors a user meets (no driver, a driver too old, no GPU).
"""

from __future__ import annotations

import ctypes
import enum
import importlib.machinery
import sys
import warnings
from dataclasses import dataclass
from types import ModuleType

__all__ = ["FakeCudaRuntime", "FakeGpuMisuse", "cudaError_t", "cudaStream_t", "install_cuda"]


class FakeGpuMisuse(AssertionError):
    """The code under test did something that corrupts memory or crashes on a real GPU."""


class cudaError_t(enum.IntEnum):  # noqa: N801 - cuda-python's names
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorStubLibrary = 34
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidResourceHandle = 400


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


class cudaStream_t:  # noqa: N801
    """A stream handle. ``int(stream)`` warns as deprecated, as cuda-bindings >= 12.9.1 documents."""

    def __init__(self, handle: int) -> None:
        self._handle = handle

    def __int__(self) -> int:
        warnings.warn("int(cuda_obj) is deprecated; use cuda.bindings.utils.get_cuda_native_handle",
                      DeprecationWarning, stacklevel=2)
        return self._handle


def get_cuda_native_handle(obj: cudaStream_t) -> int:
    """``cuda.bindings.utils.get_cuda_native_handle``."""
    return obj._handle


@dataclass(frozen=True)
class cudaDeviceProp:  # noqa: N801
    name: bytes
    major: int
    minor: int


_OK = cudaError_t.cudaSuccess
_DEVICE_BASE = 1 << 48


class FakeCudaRuntime:
    """The calls bratsx makes, with checked memory.

    Args:
        name: the GPU's name.
        capability: compute capability (major, minor).
        device_count_error: the error ``cudaGetDeviceCount`` returns (0 = works).
        driver_version, runtime_version: what ``cudaDriverGetVersion``/``cudaRuntimeGetVersion`` answer.
    """

    def __init__(self, name: bytes = b"NVIDIA H100 80GB HBM3", capability: tuple[int, int] = (9, 0),
                 device_count_error: int = 0, driver_version: int = 12080, runtime_version: int = 12080) -> None:
        self.properties = cudaDeviceProp(name, *capability)
        self.device_count_error = cudaError_t(device_count_error)
        self.driver_version, self.runtime_version = driver_version, runtime_version
        self.device: dict[int, bytearray] = {}
        self.pinned: dict[int, ctypes.Array] = {}
        self.streams: set[int] = set()
        self.copies: list[tuple[str, int]] = []
        self._next_device = _DEVICE_BASE
        self._next_stream = 1

    # device queries ----------------------------------------------------------------------------
    def cudaGetDeviceCount(self):
        if self.device_count_error != _OK:
            return self.device_count_error, 0
        return _OK, 1

    def cudaGetDeviceProperties(self, index: int):
        return (_OK, self.properties) if index == 0 else (cudaError_t.cudaErrorInvalidValue, None)

    def cudaDriverGetVersion(self):
        return _OK, self.driver_version

    def cudaRuntimeGetVersion(self):
        return _OK, self.runtime_version

    def cudaGetErrorName(self, error: int):
        return _OK, cudaError_t(int(error)).name.encode()

    # streams -----------------------------------------------------------------------------------
    def cudaStreamCreate(self):
        handle = self._next_stream
        self._next_stream += 1
        self.streams.add(handle)
        return _OK, cudaStream_t(handle)

    def stream_handle(self, stream: cudaStream_t | int) -> int:
        """The live stream ``stream`` names (objects or integer handles, as cuda-python accepts)."""
        handle = stream._handle if isinstance(stream, cudaStream_t) else stream
        if not isinstance(handle, int) or handle not in self.streams:
            raise FakeGpuMisuse(f"not a live stream: {stream!r}")
        return handle

    def cudaStreamDestroy(self, stream):
        self.streams.discard(self.stream_handle(stream))
        return (_OK,)

    def cudaStreamSynchronize(self, stream):
        self.stream_handle(stream)
        return (_OK,)

    # memory ------------------------------------------------------------------------------------
    def cudaMalloc(self, nbytes: int):
        pointer = self._next_device
        self._next_device += max(int(nbytes), 1) + 4096  # a gap: overruns never land in a neighbour
        self.device[pointer] = bytearray(int(nbytes))
        return _OK, pointer

    def cudaFree(self, pointer: int):
        if self.device.pop(int(pointer), None) is None:
            return (cudaError_t.cudaErrorInvalidValue,)
        return (_OK,)

    def cudaMallocHost(self, nbytes: int):
        buffer = ctypes.create_string_buffer(max(int(nbytes), 1))
        self.pinned[ctypes.addressof(buffer)] = buffer
        return _OK, ctypes.addressof(buffer)

    def cudaFreeHost(self, pointer: int):
        if self.pinned.pop(int(pointer), None) is None:
            return (cudaError_t.cudaErrorInvalidValue,)
        return (_OK,)

    def device_view(self, pointer: int, nbytes: int) -> memoryview:
        """``nbytes`` of device memory at ``pointer``, which must lie inside one allocation."""
        for base, memory in self.device.items():
            if base <= pointer < base + max(len(memory), 1):
                if pointer + nbytes > base + len(memory):
                    raise FakeGpuMisuse(f"device access of {nbytes} bytes at offset {pointer - base} overruns an "
                                        f"allocation of {len(memory)} bytes")
                return memoryview(memory)[pointer - base : pointer - base + nbytes]
        raise FakeGpuMisuse(f"{pointer:#x} is not device memory allocated with cudaMalloc")

    def _pinned_view(self, pointer: int, nbytes: int) -> memoryview:
        for base, buffer in self.pinned.items():
            if base <= pointer < base + ctypes.sizeof(buffer):
                if pointer + nbytes > base + ctypes.sizeof(buffer):
                    raise FakeGpuMisuse(f"host access of {nbytes} bytes overruns a pinned buffer of "
                                        f"{ctypes.sizeof(buffer)} bytes")
                return memoryview(buffer).cast("B")[pointer - base : pointer - base + nbytes]
        raise FakeGpuMisuse(f"{pointer:#x} is not pinned host memory (cudaMallocHost); pageable copies are "
                            "staged through a bounce buffer and do not overlap")

    def cudaMemcpyAsync(self, destination: int, source: int, nbytes: int, kind: int, stream):
        self.stream_handle(stream)
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            self.device_view(destination, nbytes)[:] = self._pinned_view(source, nbytes)
        elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
            self._pinned_view(destination, nbytes)[:] = self.device_view(source, nbytes)
        else:
            raise FakeGpuMisuse(f"unexpected copy kind {kind!r}")
        self.copies.append((cudaMemcpyKind(kind).name, int(nbytes)))
        return (_OK,)

    def live_allocations(self) -> int:
        """Device buffers, pinned buffers and streams not yet freed."""
        return len(self.device) + len(self.pinned) + len(self.streams)

    def as_module(self) -> ModuleType:
        module = ModuleType("cuda.bindings.runtime")
        for name in dir(self):
            if name.startswith("cuda"):
                setattr(module, name, getattr(self, name))
        module.cudaError_t, module.cudaMemcpyKind, module.cudaStream_t = cudaError_t, cudaMemcpyKind, cudaStream_t
        return module


def install_cuda(monkeypatch, runtime: FakeCudaRuntime, native_handle: bool = True) -> None:
    """Make ``from cuda.bindings import runtime`` import ``runtime`` (and ``cuda.bindings.utils`` exist
    when ``native_handle``, as in cuda-bindings >= 12.9.1)."""
    cuda, bindings = ModuleType("cuda"), ModuleType("cuda.bindings")
    cuda.__path__, bindings.__path__ = [], []
    cuda.bindings, bindings.runtime = bindings, runtime.as_module()
    modules = {"cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": bindings.runtime}
    if native_handle:
        bindings.utils = ModuleType("cuda.bindings.utils")
        bindings.utils.get_cuda_native_handle = get_cuda_native_handle
        modules["cuda.bindings.utils"] = bindings.utils
    else:
        monkeypatch.delitem(sys.modules, "cuda.bindings.utils", raising=False)
    for name, module in modules.items():
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=hasattr(module, "__path__"))
        monkeypatch.setitem(sys.modules, name, module)
