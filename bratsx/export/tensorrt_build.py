"""FP16 TensorRT engines from the gated fp16 ONNX (TensorRT >= 10 Python API).

The engine is built as a *strongly typed* network from ``model.fp16.onnx``: every tensor keeps the
type the ONNX graph gives it, so convolutions run in fp16 while InstanceNormalization and the final
activation stay in fp32, exactly as in the fp16 ONNX that passed the accuracy gate. (TensorRT 11
removed the weakly typed ``BuilderFlag.FP16`` / ``OBEY_PRECISION_CONSTRAINTS`` route; strong typing
works on TensorRT 10 and 11 alike and cannot silently drop a precision constraint.)

A JSON sidecar beside the engine records what the engine is bound to (TensorRT version, GPU and
compute capability) so the runtime can refuse an engine built elsewhere.

This module imports ``tensorrt`` only when a build is asked for. TensorRT could not be installed
where bratsx is developed, so this path has not been run there.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import __version__
from ..atomic import write_bytes_atomic
from ..contract import ModelContract
from ..errors import BratsxError
from ..runtime.tensorrt_backend import SIDECAR_SUFFIX, import_tensorrt
from .onnx_export import INPUT_NAME, file_sha256

__all__ = ["EngineInfo", "engine_from_onnx"]


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


def _gpu() -> tuple[str, str]:
    import torch

    if not torch.cuda.is_available():
        raise BratsxError("no CUDA GPU: TensorRT engines are built on the GPU they will run on")
    major, minor = torch.cuda.get_device_capability(0)
    return torch.cuda.get_device_name(0), f"{major}.{minor}"


def engine_from_onnx(
    onnx_path: Path,
    engine_path: Path,
    contract: ModelContract,
    max_batch: int = 8,
    optimization_level: int = 3,
    timing_cache: Path | None = None,
    workspace_gib: float = 4.0,
) -> EngineInfo:
    """Build a strongly typed TensorRT engine with a batch profile 1..``max_batch``.

    Args:
        onnx_path: the fp16 ONNX (its types decide each layer's precision).
        engine_path: where to write the serialized engine (atomically); the sidecar goes beside it.
        contract: the model's contract (patch size, channels).
        max_batch: largest batch of tiles the engine accepts.
        optimization_level: TensorRT builder optimisation level, 0-5 (higher builds longer).
        timing_cache: a persistent timing cache file, read if present and updated after the build.
        workspace_gib: workspace memory limit.

    Raises:
        BratsxError: TensorRT missing, no GPU, parse or build failure.
    """
    import time

    trt = import_tensorrt()
    gpu_name, capability = _gpu()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BratsxError(f"{onnx_path}: TensorRT cannot parse the model ({errors})")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    config.builder_optimization_level = optimization_level
    channels = len(contract.modality_order)
    shapes = {name: [b, channels, *contract.patch_size] for name, b in
              (("min", 1), ("opt", max(1, max_batch // 2)), ("max", max_batch))}
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BratsxError(f"{onnx_path}: TensorRT failed to build an engine (see the TensorRT log above)")
    seconds = time.perf_counter() - started
    write_bytes_atomic(engine_path, bytes(serialized))
    if timing_cache is not None:
        write_bytes_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))

    info = EngineInfo(trt.__version__, gpu_name, capability, file_sha256(onnx_path), "fp16 (strongly typed)",
                      shapes, optimization_level, __version__, round(seconds, 2))
    sidecar = {**asdict(info), "contract": contract.to_dict()}
    write_bytes_atomic(engine_path.with_suffix(SIDECAR_SUFFIX), json.dumps(sidecar, indent=2).encode())
    return info

