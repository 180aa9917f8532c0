"""Measure one backend and window (or a peer: MONAI, nnU-Net) in a process of its own, so that its peak memory
and its thread pools are its own: ``python -m bratsx.bench.worker '<json task>'`` prints one JSON result.

A task names the backend, the window, the model files, the cases and the settings; the result holds the
build time, the tile throughput (tiled rows), every per-case latency with its stages, the directory wall
time, the peak resident memory and, on CUDA, the peak GPU memory.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..cases import Case, discover_cases
from ..runtime.records import CaseStatus

__all__ = ["measure", "tile_throughput"]


def _open(task: dict[str, Any]):
    """The backend the task names, on the file that backend runs, through the one opener."""
    from ..runtime import open_model
    from ..runtime.backends import TorchOptions
    from .run import TORCH_AMP

    name = "torch" if task["backend"] == TORCH_AMP else task["backend"]
    model = {"torch": task["checkpoint"], "trt": task["engine"], "openvino-int8": task["int8"]}.get(name, task["onnx"])
    options = TorchOptions(amp=task["backend"] == TORCH_AMP, **{flag: True for flag in task["torch_flags"]})
    return open_model(model, name, device=task["device"], torch_options=options)


def tile_throughput(run: Callable[[np.ndarray], np.ndarray], patch: tuple[int, ...], batch: int, repeat: int,
                    channels: int = 4) -> float:
    """Tiles per second of ``run`` on batches of ``batch`` random ``(channels, *patch)`` tiles (the best of
    ``repeat``)."""
    tiles = np.random.default_rng(0).standard_normal((batch, channels, *patch)).astype(np.float32)
    run(tiles)  # warm-up
    best = float("inf")
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        run(tiles)
        best = min(best, time.perf_counter() - start)
    return batch / best


def _measure_bratsx(task: dict[str, Any]) -> dict[str, Any]:
    from ..postprocess import postprocess_override
    from ..runtime import InferOptions, Runner, SegmentOptions, run_batch

    start = time.perf_counter()
    with _open(task) as opened:
        backend, contract = opened.backend, opened.contract
        build = time.perf_counter() - start
        batch = task.get("sw_batch") or backend.preferred_batch
        tiled = task["window"] == "tiles"  # a box row runs the same kernels: its tile throughput is the tiled row's
        channels = len(contract.modality_order)
        tiles_per_s = tile_throughput(backend.run, contract.patch_size, batch, task["repeat"], channels) if tiled \
            else None
        cases = discover_cases(task["cases"], channels=tuple(task["channels"]))
        segment = SegmentOptions(window=task["window"], overlap=task["overlap"], sw_batch=batch, tta=task["tta"],
                                 postprocess=postprocess_override(task["postprocess"], contract.postprocess),
                                 model_labels=task["model_labels"], convention=task.get("convention"))
        runner = Runner.from_backends([backend], contract, segment)
        latencies, walls = [], []
        for _ in range(task["repeat"]):
            start = time.perf_counter()
            records = run_batch(cases, runner, Path(task["out"]), InferOptions(overwrite=True)).records
            walls.append(time.perf_counter() - start)
            failed = [r.error for r in records if r.status == CaseStatus.FAILED]
            if failed:
                raise RuntimeError(failed[0])
            latencies.extend(r.seconds for r in records)
        executed = getattr(backend, "convolution_precisions", None)  # what OpenVINO really runs, whatever its hint
        return {"device": backend.device, "precision": backend.precision, "build_s": build, "sw_batch": batch,
                "tiles_per_s": tiles_per_s, "case_seconds": latencies, "directory_wall_s": walls,
                "convolution_precisions": executed() if executed else None}


Segmenter = Callable[[Case, Path], dict[str, float]]


def _measure_peer(task: dict[str, Any], build: Callable[[], Segmenter]) -> dict[str, Any]:
    """Time a peer: ``build`` opens it as a function segmenting one case into a folder."""
    start = time.perf_counter()
    segment = build()
    build_s = time.perf_counter() - start
    cases = discover_cases(task["cases"], channels=tuple(task["channels"]))
    out = Path(task["out"])
    out.mkdir(parents=True, exist_ok=True)
    latencies, walls = [], []
    for _ in range(task["repeat"]):
        start = time.perf_counter()
        latencies.extend(segment(case, out) for case in cases)
        walls.append(time.perf_counter() - start)
    return {"device": task["device"], "precision": "fp32", "build_s": build_s, "sw_batch": 1, "tiles_per_s": None,
            "case_seconds": latencies, "directory_wall_s": walls}


def _trained(task: dict[str, Any]):
    from ..network.checkpoint import model_from_checkpoint

    return model_from_checkpoint(task["checkpoint"])


def _measure_monai(task: dict[str, Any]) -> dict[str, Any]:
    """MONAI on the same weights: the bundle's own inference for a folder imported from a bundle, else bratsx's
    network under MONAI's sliding window."""
    from .monai_reference import bundle_segment_case, monai_segment_case, open_bundle_reference

    def build() -> Segmenter:
        if task.get("bundle"):
            reference = open_bundle_reference(task["bundle"], task["device"], tuple(task["channels"]))
            return lambda case, out: bundle_segment_case(reference, case, out)[0]
        trained = _trained(task)
        network = trained.network.to(task["device"]).eval()
        return lambda case, out: monai_segment_case(case, network, trained.contract, out, task["overlap"],
                                                    task["device"])

    return _measure_peer(task, build)


def _measure_nnunet(task: dict[str, Any]) -> dict[str, Any]:
    """nnU-Net's predictor: on bratsx's network, or, for an imported model, on the results folder it came from."""
    from .nnunet_reference import nnunet_predictor, nnunet_results_predictor, nnunet_segment_case

    def build() -> Segmenter:
        source = task.get("nnunet_results")
        if source is None:
            trained = _trained(task)
            predictor = nnunet_predictor(trained.network, trained.contract, task["tta"], task["device"])
            return lambda case, out: nnunet_segment_case(predictor, case, out)
        predictor = nnunet_results_predictor(Path(source["results"]), tuple(source["folds"]), task["tta"],
                                             task["device"], source["checkpoint_name"])
        return lambda case, out: nnunet_segment_case(predictor, case, out, tuple(source["modalities"]))

    return {**_measure_peer(task, build), "mirroring": task["tta"]}


def _peak_rss_mb() -> float:
    """This process's own peak resident memory: ``VmHWM`` (``ru_maxrss`` would include the parent's,
    which Linux carries across fork and exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(task: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement task (see the module docstring) in this process."""
    measure_row = {"monai": _measure_monai, "nnunet": _measure_nnunet}.get(task["backend"], _measure_bratsx)
    result = measure_row(task)
    result["peak_rss_mb"] = _peak_rss_mb()
    torch = sys.modules.get("torch")  # only a backend that used torch has GPU memory to report
    if torch is not None and torch.cuda.is_available():
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
