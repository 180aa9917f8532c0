"""Which accelerators this process can use: the one place that decides "GPU if visible".

Every probe imports its package lazily and answers ``False`` when the package is absent, so asking
never fails and an inference install without torch can still ask.
"""

from __future__ import annotations

import importlib.util

__all__ = ["installed", "ort_cuda_available", "tensorrt_available", "torch_cuda_available", "torch_device"]


def installed(package: str) -> bool:
    """Whether ``package`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # blocked, or registered as absent in sys.modules
        return False


def torch_cuda_available() -> bool:
    """PyTorch is installed and sees a CUDA GPU."""
    if not installed("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def ort_cuda_available() -> bool:
    """ONNX Runtime is installed with its CUDA execution provider (onnxruntime-gpu)."""
    if not installed("onnxruntime"):
        return False
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def tensorrt_available() -> bool:
    """The TensorRT Python package is installed (whether a GPU is usable is the engine's to check)."""
    return installed("tensorrt")


def torch_device() -> str:
    """``cuda`` when PyTorch sees a GPU, else ``cpu``: the default for training and the torch backend."""
    return "cuda" if torch_cuda_available() else "cpu"
