"""FP16 TensorRT engines from the gated fp16 ONNX (TensorRT >= 10 Python API).

The engine is built as a *strongly typed* network from ``model.fp16.onnx``: every tensor keeps the
type the ONNX graph gives it, so convolutions run in fp16 while InstanceNormalization and the final
activation stay in fp32, exactly as in the fp16 ONNX that passed the accuracy gate. (TensorRT 11
removed the weakly typed ``BuilderFlag.FP16`` / ``OBEY_PRECISION_CONSTRAINTS`` route; strong typing
works on TensorRT 10 and 11 alike and cannot silently drop a precision constraint.)

The optimisation profile accepts batches 1..``max_batch`` and is tuned for the batch the runtime
sends (:attr:`~bratsx.runtime.tensorrt_backend.TrtBackend.preferred_batch` is the largest one). A
persistent timing cache speeds up rebuilds; a cache TensorRT rejects (another GPU or TensorRT
version, or a damaged file) is replaced by a fresh one, with a warning, instead of failing the build.

A JSON sidecar beside the engine records what the engine is bound to (TensorRT version, GPU and
compute capability) and the model contract, so the runtime can refuse an engine built elsewhere and
segment with the engine's own contract.

This module imports ``tensorrt`` only when a build is asked for. No GPU or TensorRT exists where
bratsx is developed: the control flow is tested against stand-ins (``tests/gpu_fakes``) only.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import write_bytes_atomic
from ..contract import ModelContract, file_sha256
from ..errors import BratsxError
from ..runtime.cuda_runtime import CudaRuntime
from ..runtime.tensorrt_backend import import_tensorrt, sidecar_path
from .onnx_export import INPUT_NAME

__all__ = ["EngineInfo", "engine_from_onnx"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineInfo:
    """The sidecar written beside an engine."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    onnx_sha256: str
    precision: str
    profile: dict[str, list[int]]
    optimization_level: int
    bratsx_version: str
    build_seconds: float


def _profile(contract: ModelContract, max_batch: int, opt_batch: int | None) -> dict[str, list[int]]:
    """Input shapes (min, opt, max) of the batch profile."""
    opt = max_batch if opt_batch is None else opt_batch
    if max_batch < 1 or not 1 <= opt <= max_batch:
        raise BratsxError(f"the engine's batch profile needs 1 <= opt_batch <= max_batch, got {opt} and {max_batch}")
    tile = [len(contract.modality_order), *contract.patch_size]
    return {"min": [1, *tile], "opt": [opt, *tile], "max": [max_batch, *tile]}


def _check_network(network: Any, onnx_path: Path, tile: list[int]) -> None:
    """The parsed graph is a bratsx model: one input ``image`` of shape (N, *tile), one output."""
    if network.num_inputs != 1 or network.num_outputs != 1:
        raise BratsxError(f"{onnx_path}: {network.num_inputs} input(s) and {network.num_outputs} output(s); "
                          "a bratsx model has one of each")
    graph_input = network.get_input(0)
    shape = [int(d) for d in graph_input.shape]
    if graph_input.name != INPUT_NAME or shape[1:] != tile:
        raise BratsxError(f"{onnx_path}: input {graph_input.name!r} {shape}, but the contract needs "
                          f"{INPUT_NAME!r} [N, {', '.join(map(str, tile))}]; re-export the model")


def _attach_timing_cache(config: Any, path: Path) -> Any:
    """Attach the timing cache stored at ``path``, or a fresh one when there is none or TensorRT rejects it.

    Returns the attached cache (it must outlive the build).
    """
    if path.is_file():
        cache = config.create_timing_cache(path.read_bytes())
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return cache
        logger.warning("%s: TensorRT rejected this timing cache (made on another GPU or TensorRT version, or "
                       "damaged); building with a fresh cache, which will replace it", path)
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise BratsxError("TensorRT could not create a timing cache (see the TensorRT log above)")
    return cache


def _save_timing_cache(config: Any, path: Path) -> None:
    cache = config.get_timing_cache()
    if cache is None:
        logger.warning("%s: TensorRT returned no timing cache after the build; the file was not updated", path)
        return
    write_bytes_atomic(path, bytes(cache.serialize()))


def engine_from_onnx(
    onnx_path: Path,
    engine_path: Path,
    contract: ModelContract,
    max_batch: int = 8,
    optimization_level: int = 3,
    timing_cache: Path | None = None,
    workspace_gib: float = 4.0,
    opt_batch: int | None = None,
) -> EngineInfo:
    """Build a strongly typed TensorRT engine with a batch profile 1..``max_batch``.

    Args:
        onnx_path: the fp16 ONNX (its types decide each layer's precision).
        engine_path: where to write the serialized engine (atomically); the sidecar goes beside it
            (:func:`~bratsx.runtime.tensorrt_backend.sidecar_path`).
        contract: the model's contract (patch size, channels).
        max_batch: largest batch of tiles the engine accepts.
        optimization_level: TensorRT builder optimisation level, 0-5 (higher builds longer).
        timing_cache: a persistent timing cache file, read if present and usable, written after the build.
        workspace_gib: workspace memory limit.
        opt_batch: the batch TensorRT tunes its kernels for (default ``max_batch``, the batch the
            runtime sends).

    Returns:
        What the sidecar records.

    Raises:
        BratsxError: TensorRT or cuda-python missing, no usable GPU, a graph that is not a bratsx
            model, a bad batch profile, or a parse or build failure.
    """
    shapes = _profile(contract, max_batch, opt_batch)
    trt = import_tensorrt()
    gpu = CudaRuntime.load().gpu()
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BratsxError(f"{onnx_path}: TensorRT cannot parse the model ({errors})")
    _check_network(network, onnx_path, shapes["max"][1:])

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    config.builder_optimization_level = optimization_level
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, shapes["min"], shapes["opt"], shapes["max"])
    if config.add_optimization_profile(profile) < 0:
        raise BratsxError(f"{onnx_path}: TensorRT rejected the batch profile {shapes}")
    cache = _attach_timing_cache(config, timing_cache) if timing_cache is not None else None

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BratsxError(f"{onnx_path}: TensorRT failed to build an engine (see the TensorRT log above)")
    seconds = time.perf_counter() - started
    write_bytes_atomic(engine_path, bytes(serialized))
    if cache is not None:
        _save_timing_cache(config, timing_cache)

    info = EngineInfo(trt.__version__, gpu.name, gpu.compute_capability, file_sha256(onnx_path),
                      "fp16 (strongly typed)", shapes, optimization_level, __version__, round(seconds, 2))
    sidecar = {**asdict(info), "contract": contract.to_dict()}
    write_bytes_atomic(sidecar_path(engine_path), json.dumps(sidecar, indent=2).encode())
    return info
