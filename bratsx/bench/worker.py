"""Measure one backend (or the MONAI peer) in a process of its own, so that its peak memory and its
thread pools are its own: ``python -m bratsx.bench.worker '<json task>'`` prints one JSON result.

A task names the backend, the model files, the cases and the settings; the result holds the build
time, the tile throughput, every per-case latency with its stages, the directory wall time, the
peak resident memory and, on CUDA, the peak GPU memory.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..cases import discover_cases

__all__ = ["measure"]


def _open(task: dict[str, Any]):
    """The backend the task names, on the file that backend runs, through the one opener."""
    from ..runtime import open_model

    name = task["backend"]
    model = {"torch": task["checkpoint"], "trt": task["engine"]}.get(name, task["onnx"])
    return open_model(model, name, device=task["device"])


def _tile_throughput(run, patch: tuple[int, ...], batch: int, repeat: int) -> float:
    tiles = np.random.default_rng(0).standard_normal((batch, 4, *patch)).astype(np.float32)
    run(tiles)  # warm-up
    best = float("inf")
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        run(tiles)
        best = min(best, time.perf_counter() - start)
    return batch / best


def _measure_bratsx(task: dict[str, Any]) -> dict[str, Any]:
    from ..runtime import InferOptions, SegmentOptions, infer_cases

    start = time.perf_counter()
    with _open(task) as opened:
        backend, contract = opened.backend, opened.contract
        build = time.perf_counter() - start
        batch = task.get("sw_batch") or backend.preferred_batch
        tiles_per_s = _tile_throughput(backend.run, contract.patch_size, batch, task["repeat"])
        cases = discover_cases(task["cases"])
        options = InferOptions(segment=SegmentOptions(overlap=task["overlap"], sw_batch=batch, tta=task["tta"]),
                               overwrite=True)
        latencies, walls = [], []
        for _ in range(task["repeat"]):
            start = time.perf_counter()
            records = infer_cases(cases, [backend], contract, Path(task["out"]), options)
            walls.append(time.perf_counter() - start)
            failed = [r.error for r in records if r.status == "failed"]
            if failed:
                raise RuntimeError(failed[0])
            latencies.extend(r.seconds for r in records)
        return {"device": backend.device, "precision": backend.precision, "build_s": build, "sw_batch": batch,
                "tiles_per_s": tiles_per_s, "case_seconds": latencies, "directory_wall_s": walls}


def _measure_monai(task: dict[str, Any]) -> dict[str, Any]:
    from ..trainer.checkpoint import model_from_checkpoint
    from .monai_reference import monai_segment_case

    start = time.perf_counter()
    trained = model_from_checkpoint(task["checkpoint"])
    network = trained.network.to(task["device"]).eval()
    build = time.perf_counter() - start
    cases = discover_cases(task["cases"])
    out = Path(task["out"])
    out.mkdir(parents=True, exist_ok=True)
    latencies, walls = [], []
    for _ in range(task["repeat"]):
        start = time.perf_counter()
        for case in cases:
            latencies.append(monai_segment_case(case, network, trained.contract, out, task["overlap"],
                                                task["device"]))
        walls.append(time.perf_counter() - start)
    return {"device": task["device"], "precision": "fp32", "build_s": build, "sw_batch": 1, "tiles_per_s": None,
            "case_seconds": latencies, "directory_wall_s": walls}


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
    result = _measure_monai(task) if task["backend"] == "monai" else _measure_bratsx(task)
    result["peak_rss_mb"] = _peak_rss_mb()
    torch = sys.modules.get("torch")  # only a backend that used torch has GPU memory to report
    if torch is not None and torch.cuda.is_available():
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
