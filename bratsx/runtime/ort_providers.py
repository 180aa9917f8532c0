"""ONNX Runtime execution providers for ``--device cuda`` and ``--ort-tensorrt``, and the check that a
session really loaded them.

``onnxruntime.get_available_providers()`` lists what the installed package was *built* with. Whether
a provider *loads* is decided when a session is created: without its CUDA or cuDNN libraries the CUDA
provider is dropped with a log line and the session runs on the CPU. :func:`check_session_providers`
compares the session's providers with what was asked for and names the library that is likely
missing, from the CUDA and cuDNN majors this onnxruntime-gpu was built for (its ``cuda_version``; the
PyPI default is CUDA 12 with cuDNN 9 from 1.19 on, CUDA 11.8 with cuDNN 8 before).

TensorRT through ONNX Runtime gets an explicit batch profile for the model's one input (a partial
last batch would otherwise rebuild the engine), keeps fp16 off unless the caller says an accuracy
gate passed for it, and is refused on the CPU instead of being ignored.

No GPU exists where bratsx is developed: these functions are tested against a stand-in of the
``onnxruntime`` module only.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import BratsxError
from ..printed import printed_to_debug_log

__all__ = ["CPU", "CUDA", "TENSORRT", "check_session_providers", "missing_cuda_libraries", "ort_providers"]

logger = logging.getLogger(__name__)

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def _preload_cuda_libraries(ort: Any) -> None:
    """Let ONNX Runtime find CUDA and cuDNN installed from pip (nvidia-* wheels), as its docs advise.

    ``onnxruntime.preload_dlls`` (1.21+) prints what it cannot load; that goes to the debug log instead.
    """
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    with printed_to_debug_log(logger, "onnxruntime.preload_dlls") as printed:
        try:
            preload()
        except Exception as error:  # noqa: BLE001 - a failed preload only means the libraries come from the system
            printed.write(str(error))


def _shape(input_name: str, batch: int, channels: int, patch: Sequence[int]) -> str:
    return f"{input_name}:" + "x".join(str(d) for d in (batch, channels, *patch))


def ort_providers(
    ort: Any,
    model: Path,
    device: str,
    tensorrt: bool,
    max_batch: int,
    patch: Sequence[int],
    *,
    channels: int = 4,
    input_name: str = "image",
    fp16: bool = False,
) -> list:
    """The provider list for an ONNX Runtime session.

    Args:
        ort: the ``onnxruntime`` module.
        model: the ``.onnx`` file (the TensorRT provider caches its engines beside it).
        device: ``cpu`` or ``cuda``.
        tensorrt: put ONNX Runtime's TensorRT provider first (CUDA only).
        max_batch: the largest batch of tiles the session will run (the TensorRT profile's max and opt).
        patch: the tile size (z, y, x).
        channels: input channels (the four modalities).
        input_name: the graph's input (``image`` in bratsx exports).
        fp16: let TensorRT compute in fp16; only for a model whose fp16 accuracy gate passed on this
            provider. The fp16 ONNX needs no flag: its own types already say what runs in fp16.

    Returns:
        Provider names and ``(name, options)`` pairs, best first, ending with the CPU provider.

    Raises:
        BratsxError: an unknown device, TensorRT asked for on the CPU, a batch below 1, or a provider
            this onnxruntime package was not built with (saying which package to install).
    """
    if tensorrt and device != "cuda":
        raise BratsxError("--ort-tensorrt needs --device cuda: ONNX Runtime's TensorRT provider runs on NVIDIA GPUs")
    if device == "cpu":
        return [CPU]
    if device != "cuda":
        raise BratsxError(f"ONNX Runtime device must be cpu or cuda, got {device!r}")
    available = ort.get_available_providers()
    if CUDA not in available:
        raise BratsxError(
            f"ONNX Runtime has no CUDA execution provider here (available: {', '.join(available)}): "
            "pip uninstall -y onnxruntime && pip install 'bratsx[gpu]', with an NVIDIA GPU and driver"
        )
    _preload_cuda_libraries(ort)
    providers: list = [(CUDA, {"device_id": 0, "cudnn_conv_algo_search": "HEURISTIC"}), CPU]
    if not tensorrt:
        return providers
    if TENSORRT not in available:
        raise BratsxError("this onnxruntime-gpu has no TensorRT execution provider; run without --ort-tensorrt")
    if max_batch < 1:
        raise BratsxError(f"the TensorRT profile needs a largest batch of at least 1, got {max_batch}")
    cache = str(model.parent / "ort-trt-cache")
    options = {
        "device_id": 0,
        "trt_fp16_enable": fp16,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": cache,
        "trt_profile_min_shapes": _shape(input_name, 1, channels, patch),
        "trt_profile_opt_shapes": _shape(input_name, max_batch, channels, patch),
        "trt_profile_max_shapes": _shape(input_name, max_batch, channels, patch),
    }
    return [(TENSORRT, options), *providers]


def _cuda_requirements(ort: Any) -> tuple[int, int]:
    """CUDA and cuDNN majors this onnxruntime-gpu build needs."""
    built_with = str(getattr(ort, "cuda_version", "") or "")
    if built_with.split(".")[0].isdigit():
        cuda = int(built_with.split(".")[0])
    else:
        version = tuple(int(p) for p in ort.__version__.split(".")[:2] if p.isdigit())
        cuda = 12 if version >= (1, 19) else 11
    return cuda, 9 if cuda >= 12 else 8


def _sonames(cuda: int, cudnn: int) -> list[str]:
    """The Linux libraries ONNX Runtime's CUDA provider loads (as its ``preload_dlls`` lists them)."""
    cufft = {11: 10, 12: 11}.get(cuda, 12)
    return ["libcuda.so.1", f"libcudart.so.{cuda}", f"libcublasLt.so.{cuda}", f"libcublas.so.{cuda}",
            "libcurand.so.10", f"libcufft.so.{cufft}", f"libcudnn.so.{cudnn}"]


def _loads(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_cuda_libraries(ort: Any) -> list[str]:
    """The CUDA/cuDNN libraries (Linux sonames) the CUDA provider of ``ort`` needs and cannot load."""
    return [name for name in _sonames(*_cuda_requirements(ort)) if not _loads(name)]


def _cuda_diagnosis(ort: Any) -> str:
    cuda, cudnn = _cuda_requirements(ort)
    needs = f"onnxruntime-gpu {ort.__version__} needs CUDA {cuda}.x and cuDNN {cudnn}.x"
    if not sys.platform.startswith("linux"):
        return f"{needs}; see https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html"
    missing = missing_cuda_libraries(ort)
    if "libcuda.so.1" in missing:
        return f"no NVIDIA driver (libcuda.so.1 cannot be loaded); {needs}"
    if not missing:
        return f"{needs}; they load here, so check the GPU (nvidia-smi) and the ONNX Runtime log"
    return (f"{needs}; cannot load {', '.join(missing)}: pip install 'onnxruntime-gpu[cuda,cudnn]' or add the "
            "CUDA and cuDNN library folders to LD_LIBRARY_PATH")


def check_session_providers(session: Any, device: str, tensorrt: bool) -> None:
    """Refuse a session that silently fell back from the providers asked for.

    Args:
        session: an ``onnxruntime.InferenceSession``.
        device: the device asked for (nothing to check for ``cpu``).
        tensorrt: whether the TensorRT provider was asked for.

    Raises:
        BratsxError: naming the provider that did not load, what the session runs on, and the likely
            missing library.
    """
    if device != "cuda":
        return
    loaded = session.get_providers()
    missing = [p for p in ((TENSORRT, CUDA) if tensorrt else (CUDA,)) if p not in loaded]
    if not missing:
        return
    import onnxruntime as ort

    if CUDA in missing:
        reason = _cuda_diagnosis(ort)
    else:
        reason = ("TensorRT's libraries (libnvinfer, libnvonnxparser) of the version this onnxruntime-gpu was built "
                  "with are likely missing; see https://onnxruntime.ai/docs/execution-providers/"
                  "TensorRT-ExecutionProvider.html, or run without --ort-tensorrt")
    raise BratsxError(f"ONNX Runtime did not load {' and '.join(missing)} (the session runs on {', '.join(loaded)}): "
                      f"{reason}")
