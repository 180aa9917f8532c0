"""Control-flow doubles for the GPU paths: stand-ins for ``cuda-python`` and ``tensorrt``.

These are NOT a GPU and say nothing about numerics or speed. They enforce the contracts the real
libraries impose and that bugs break silently on hardware (an overrun copy, a shape TensorRT
refuses, a stream passed as the wrong type, pageable memory where pinned memory is required), so
the builder's and runner's control flow runs on any CPU:

- :mod:`.cuda`: ``cuda.bindings.runtime`` with fake device memory (bounds-checked), real pinned host
  memory, streams, error codes (no driver, old driver, no GPU) and ``cuda.bindings.utils``.
- :mod:`.tensorrt`: ``tensorrt`` with a builder (strong typing, profiles, timing caches that carry the
  GPU they were made on), a runtime whose "engine" computes with ONNX Runtime's CPU provider on the
  ONNX it was built from, and an execution context that checks shapes against the profile, tensor
  addresses against device memory and stream handles against the fake CUDA runtime.

Misuse that real hardware would turn into corrupted memory or a crash raises :class:`FakeGpuMisuse`.
"""

from .cuda import FakeCudaRuntime, FakeGpuMisuse, install_cuda
from .tensorrt import FakeTensorRT, install_tensorrt

__all__ = ["FakeCudaRuntime", "FakeGpuMisuse", "FakeTensorRT", "install_cuda", "install_tensorrt"]
