"""The few CUDA runtime calls the TensorRT path makes, through ``cuda-python`` (imported lazily).

Every call returns ``(error, value...)`` in cuda-python; :meth:`CudaRuntime.call` unpacks it and turns
a failure into a :class:`~bratsx.errors.BratsxError` naming the call and CUDA's own error name. The
errors a user meets before anything has run (no driver, a driver too old for the CUDA build of
cuda-python, no GPU) become one line saying what to do instead of ``CUDA error 35``.

Streams are passed to TensorRT as native handles: ``int(stream)`` is deprecated since cuda-bindings
12.9.1 / 13.0 in favour of ``cuda.bindings.utils.get_cuda_native_handle``, used when present.
Host buffers are pinned (``cudaMallocHost``), so copies are true DMA transfers that overlap nothing
else on the host and are not staged through a pageable bounce buffer.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BratsxError
from ..extras import optional_import, optional_module

__all__ = ["CudaRuntime", "GpuInfo", "pinned_array"]

#: CUDA runtime error codes that mean "this machine cannot run CUDA at all" (cuda_runtime_api.h).
STUB_LIBRARY, INSUFFICIENT_DRIVER, REQUIRES_NEWER_DRIVER, NO_DEVICE, DRIVER_MISMATCH = 34, 35, 36, 100, 803
_NO_GPU = "no CUDA GPU is visible: check nvidia-smi and CUDA_VISIBLE_DEVICES"


@dataclass(frozen=True)
class GpuInfo:
    """The GPU an engine is built for or runs on."""

    name: str
    compute_capability: str


def _version(encoded: int) -> str:
    """CUDA's ``1000 * major + 10 * minor`` as ``major.minor``."""
    return f"{encoded // 1000}.{encoded % 1000 // 10}"


class CudaRuntime:
    """``cuda.bindings.runtime`` (or the older ``cuda.cudart``) behind checked calls.

    Args:
        module: the cuda-python runtime module.
        native_handle: turns a stream object into the integer handle TensorRT takes.
    """

    def __init__(self, module: Any, native_handle: Callable[[Any], int]) -> None:
        self.module = module
        self._native_handle = native_handle

    @classmethod
    def load(cls) -> CudaRuntime:
        """Import cuda-python's runtime bindings.

        Raises:
            BratsxError: cuda-python is not installed.
        """
        runtime = (optional_module("cuda.bindings.runtime")  # cuda-bindings >= 12.6
                   or optional_import("cuda.cudart", "trt"))  # cuda-python < 12.6 (removed in 13)
        utils = optional_module("cuda.bindings.utils")  # get_cuda_native_handle: cuda-bindings >= 12.9.1
        native_handle = getattr(utils, "get_cuda_native_handle", int)
        return cls(runtime, native_handle)

    def call(self, what: str, result: tuple) -> Any:
        """Unpack a cuda-python ``(error, value...)`` result.

        Raises:
            BratsxError: the call failed; driver-level failures get a line saying how to fix them.
        """
        error, *values = result
        if int(error) != 0:
            raise self._error(what, error)
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def _error(self, what: str, error: Any) -> BratsxError:
        code = int(error)
        if code in (INSUFFICIENT_DRIVER, REQUIRES_NEWER_DRIVER):
            return BratsxError(self._driver_too_old())
        if code == NO_DEVICE:
            return BratsxError(_NO_GPU)
        if code == STUB_LIBRARY:
            return BratsxError("the CUDA driver found is a stub library, not an NVIDIA driver: install the NVIDIA "
                               "driver, or remove the CUDA stubs folder from LD_LIBRARY_PATH")
        if code == DRIVER_MISMATCH:
            return BratsxError("the NVIDIA kernel driver and its user-space libraries differ in version "
                               "(a driver update without a reboot?): reboot, or reinstall the driver")
        name = self.module.cudaGetErrorName(error)
        label = name[1].decode() if int(name[0]) == 0 else str(code)
        return BratsxError(f"CUDA error {label} ({code}) in {what}")

    def _driver_too_old(self) -> str:
        runtime_error, runtime = self.module.cudaRuntimeGetVersion()
        built_for = int(runtime) if int(runtime_error) == 0 else 0
        needed = _version(built_for) if built_for else "of this cuda-python"
        driver_error, driver = self.module.cudaDriverGetVersion()
        if int(driver_error) != 0 or int(driver) == 0:
            return f"no usable NVIDIA driver (libcuda cannot be loaded): install an NVIDIA driver for CUDA {needed}"
        advice = f"update the NVIDIA driver to one for CUDA {needed} or newer"
        if built_for >= 13000:
            advice += ", or use the CUDA 12 builds: pip install 'bratsx[trt-cu12]'"
        return f"the NVIDIA driver supports CUDA {_version(int(driver))}, older than CUDA {needed}: {advice}"

    def gpu(self, index: int = 0) -> GpuInfo:
        """Name and compute capability of GPU ``index``.

        Raises:
            BratsxError: no driver, a driver too old, or no GPU.
        """
        count = self.call("cudaGetDeviceCount", self.module.cudaGetDeviceCount())
        if count <= index:
            raise BratsxError(_NO_GPU)
        properties = self.call("cudaGetDeviceProperties", self.module.cudaGetDeviceProperties(index))
        name = properties.name
        name = name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(name, bytes) else str(name)
        return GpuInfo(name, f"{properties.major}.{properties.minor}")

    def handle(self, stream: Any) -> int:
        """The integer handle of ``stream`` that TensorRT's ``execute_async_v3`` takes."""
        return int(self._native_handle(stream))

    def create_stream(self) -> Any:
        return self.call("cudaStreamCreate", self.module.cudaStreamCreate())

    def destroy_stream(self, stream: Any) -> None:
        self.call("cudaStreamDestroy", self.module.cudaStreamDestroy(stream))

    def synchronize(self, stream: Any) -> None:
        self.call("cudaStreamSynchronize", self.module.cudaStreamSynchronize(stream))

    def malloc(self, nbytes: int) -> int:
        """Device memory of ``nbytes``."""
        return int(self.call("cudaMalloc", self.module.cudaMalloc(nbytes)))

    def malloc_host(self, nbytes: int) -> int:
        """Pinned (page-locked) host memory of ``nbytes``."""
        return int(self.call("cudaMallocHost", self.module.cudaMallocHost(nbytes)))

    def free(self, pointer: int) -> None:
        self.call("cudaFree", self.module.cudaFree(pointer))

    def free_host(self, pointer: int) -> None:
        self.call("cudaFreeHost", self.module.cudaFreeHost(pointer))

    def to_device(self, device: int, host: int, nbytes: int, stream: Any) -> None:
        kind = self.module.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.call("cudaMemcpyAsync", self.module.cudaMemcpyAsync(device, host, nbytes, kind, stream))

    def to_host(self, host: int, device: int, nbytes: int, stream: Any) -> None:
        kind = self.module.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.call("cudaMemcpyAsync", self.module.cudaMemcpyAsync(host, device, nbytes, kind, stream))


def pinned_array(pointer: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A NumPy view of pinned host memory at ``pointer`` (the caller keeps the memory alive)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.ctypeslib.as_array(ctypes.cast(ctypes.c_void_p(pointer), ctypes.POINTER(ctypes.c_ubyte)), (nbytes,))
    return raw.view(dtype).reshape(shape)
