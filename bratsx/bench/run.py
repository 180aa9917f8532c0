"""``bratsx bench``: throughput and latency per backend, against the machine's peak and against MONAI.

One report, from one run on one set of cases and one set of weights:

- per backend: build/compile time, tile throughput (tiles/s, voxels/s), effective GFLOP/s from the
  model's FLOPs per tile and their fraction of the fp32 GEMM peak measured in the same run, per-case
  latency p50/p95 with the stage breakdown, directory throughput (cases/min), peak memory;
- with ``compare_monai``: MONAI's ``sliding_window_inference`` with PyTorch eager on the same weights
  and cases, the speed ratio of every backend to it, and the per-region Dice agreement between the
  two outputs; a ratio counts only where agreement is at least :data:`AGREEMENT_FLOOR`.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..cases import Case, discover_cases
from ..errors import BratsxError
from ..runtime.backends import BackendName
from ..runtime.evaluate import evaluate_directories
from ..runtime.segment import STAGES
from .flops import tile_flops
from .machine import machine_info
from .peak import cpu_gemm_gflops

__all__ = ["AGREEMENT_FLOOR", "BenchConfig", "run_bench"]

#: Dice agreement with MONAI below which a speed ratio is not counted (the outputs differ).
AGREEMENT_FLOOR = 0.99


#: Backends the bench can measure (every named backend but ``auto``).
BENCH_BACKENDS = tuple(b.value for b in BackendName if b is not BackendName.AUTO)


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """What to measure.

    Attributes:
        backends: bratsx backends to measure (``ort``, ``openvino``, ``openvino-bf16``, ``torch``, ``trt``).
        model: a checkpoint, run directory or model folder (its recorded checkpoint); ``None`` for the
            default network with random weights.
        cases_dir: cases to run; ``None`` for ``synthetic`` synthetic 240x240x155 cases.
        synthetic: how many synthetic cases.
        compare_monai: also run MONAI's sliding window on the same weights.
        tta: mirror test-time augmentation in bratsx (MONAI is always run without).
        repeat: passes over the cases per backend.
        overlap: sliding-window overlap.
        device: ``cpu`` or ``cuda``, for ort, torch and MONAI.
        engine: a TensorRT engine, for the ``trt`` backend.
    """

    backends: tuple[str, ...] = ("ort", "openvino", "torch")
    model: Path | None = None
    cases_dir: Path | None = None
    synthetic: int = 2
    compare_monai: bool = False
    tta: bool = False
    repeat: int = 2
    overlap: float = 0.5
    device: str = "cpu"
    engine: Path | None = None


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _model_files(config: BenchConfig, work: Path) -> tuple[Path, Path]:
    """The checkpoint (for torch and MONAI) and the ONNX export of the same weights."""
    from ..export.pipeline import export_model
    from ..modelfolder import find_model_folder

    checkpoint = config.model
    folder = find_model_folder(checkpoint) if checkpoint is not None else None
    if folder is not None:
        checkpoint = folder.checkpoint
        if checkpoint is None:
            raise BratsxError(f"bench --model {config.model}: the checkpoint this model was exported from is not "
                              "recorded or gone; give the run directory (every backend runs the same weights)")
    if checkpoint is None:
        import torch

        from ..contract import ModelContract
        from ..trainer.checkpoint import save_checkpoint
        from ..trainer.network import NetworkConfig, UNet3D

        torch.manual_seed(0)
        network = NetworkConfig()
        contract = ModelContract((128, 128, 128), "regions", network.to_dict())
        checkpoint = save_checkpoint({"contract": contract.to_dict(), "model": UNet3D(network).state_dict()},
                                     work / "random-weights.pt")
    return checkpoint, export_model(checkpoint, work / "model").onnx


def _summarise(raw: dict[str, Any], flops: float, peaks: dict[str, float | None], patch_voxels: int,
               cases: int) -> dict:
    totals = [sum(seconds.values()) for seconds in raw["case_seconds"]]
    wall = float(np.median(raw["directory_wall_s"]))
    summary = {
        "device": raw["device"], "precision": raw["precision"], "build_s": raw["build_s"],
        "sw_batch": raw["sw_batch"],
        "case_p50_s": _percentile(totals, 50), "case_p95_s": _percentile(totals, 95),
        "stages_mean_s": {s: float(np.mean([c.get(s, 0.0) for c in raw["case_seconds"]])) for s in STAGES},
        "cases_per_min": 60.0 * cases / wall if wall else None,
        "peak_rss_mb": raw.get("peak_rss_mb"), "peak_gpu_mb": raw.get("peak_gpu_mb"),
    }
    if raw["tiles_per_s"]:
        gflops = raw["tiles_per_s"] * flops / 1e9
        summary.update({"tiles_per_s": raw["tiles_per_s"], "voxels_per_s": raw["tiles_per_s"] * patch_voxels,
                        "effective_gflops": gflops,
                        "fraction_of_peak": None})
        peak = peaks.get("bf16" if raw["precision"] == "bf16" else "fp32")  # bf16 is judged by its own peak
        if raw["device"] == "cpu" and peak:
            summary["fraction_of_peak"] = gflops / peak
    return summary


def _mean_dice(predictions: Path, references: Path) -> dict[str, float]:
    """Mean per-region Dice of the segmentations in ``predictions`` against those in ``references``."""
    results = [r for r in evaluate_directories(predictions, references) if r.metrics]
    return {region: float(np.mean([r.metrics[f"dice_{region}"] for r in results])) for region in ("WT", "TC", "ET")}


def _reference_folder(cases: Sequence[Case], folder: Path) -> Path:
    """``folder/<id>.nii[.gz]`` links to each case's reference, whatever its layout (MSD keeps them apart)."""
    folder.mkdir(parents=True, exist_ok=True)
    for case in cases:
        suffix = ".nii.gz" if case.label.name.endswith(".gz") else ".nii"
        (folder / f"{case.case_id}{suffix}").symlink_to(case.label.resolve())
    return folder


def run_bench(config: BenchConfig, on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure every backend of ``config`` (each in its own process) and return the report.

    Raises:
        BratsxError: a backend that cannot run here, or bad cases.
    """
    step = on_step or (lambda text: None)
    unknown = [b for b in config.backends if b not in BENCH_BACKENDS]
    if unknown or not config.backends:
        raise BratsxError(f"--backends {','.join(config.backends)!r}: choose among {', '.join(BENCH_BACKENDS)}")
    with tempfile.TemporaryDirectory(prefix="bratsx-bench-") as scratch:
        return _run_bench(config, Path(scratch), step)


def _run_bench(config: BenchConfig, work: Path, step: Callable[[str], None]) -> dict[str, Any]:
    from ..contract import read_onnx_contract
    from ..synth import write_synthetic_dataset

    step("preparing the model")
    checkpoint, onnx_path = _model_files(config, work)
    contract = read_onnx_contract(onnx_path)
    cases_dir = config.cases_dir
    if cases_dir is None:
        step(f"synthesising {config.synthetic} case(s)")
        cases_dir = work / "cases"
        write_synthetic_dataset(cases_dir, config.synthetic, seed=7)
    cases = discover_cases(cases_dir)
    step("measuring the GEMM peaks (fp32, bf16)")
    peaks = {precision: cpu_gemm_gflops(precision=precision) for precision in ("fp32", "bf16")}
    flops = tile_flops(onnx_path)
    patch_voxels = int(np.prod(contract.patch_size))

    report: dict[str, Any] = {
        "bratsx": __version__, "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(), "cases": [c.case_id for c in cases], "overlap": config.overlap,
        "tta": config.tta, "model": str(config.model or "default network, random weights (seed 0)"),
        "patch": list(contract.patch_size), "tile_gflop": flops / 1e9, "cpu_gemm_peak_gflops": peaks,
        "backends": {},
    }
    names = [*config.backends, *(["monai"] if config.compare_monai else [])]
    for name in names:
        step(f"measuring {name}")
        task = {"backend": name, "onnx": str(onnx_path), "checkpoint": str(checkpoint), "cases": str(cases_dir),
                "out": str(work / "out" / name), "repeat": config.repeat, "overlap": config.overlap,
                "tta": config.tta, "device": config.device,
                "engine": str(config.engine) if config.engine else None}
        # Run from the scratch folder, so the worker imports the installed bratsx, never a folder named
        # bratsx in the user's current directory.
        process = subprocess.run([sys.executable, "-m", "bratsx.bench.worker", json.dumps(task)],
                                 capture_output=True, text=True, check=False, cwd=work)
        if process.returncode != 0:
            last = process.stderr.strip().splitlines()[-1] if process.stderr.strip() else "no output"
            raise BratsxError(f"bench: the {name} backend failed: {last}")
        raw = json.loads(process.stdout.strip().splitlines()[-1])
        report["backends"][name] = _summarise(raw, flops, peaks, patch_voxels, len(cases))

    labelled = [case for case in cases if case.label is not None]
    if labelled:
        references = _reference_folder(labelled, work / "references")
        for name in names:
            report["backends"][name]["dice_vs_reference"] = _mean_dice(work / "out" / name, references)
    if config.compare_monai:
        monai = report["backends"]["monai"]
        for name in config.backends:
            agreement = _mean_dice(work / "out" / name, work / "out" / "monai")
            entry = report["backends"][name]
            entry["agreement_with_monai"] = agreement
            ratio = monai["case_p50_s"] / entry["case_p50_s"]
            entry["latency_ratio_vs_monai"] = ratio  # measured, whatever the agreement
            entry["speedup_vs_monai"] = ratio if min(agreement.values()) >= AGREEMENT_FLOOR else None
    return report
