"""The whole pipeline on synthetic data, for a new user right after install: synth, train, export, infer.

Each step is the library function the corresponding command calls, so the demo shows exactly what
``bratsx synth``, ``train``, ``export`` and ``infer`` do. Training runs a fixed number of steps, not a
time budget, so the result does not depend on how fast or how busy the CPU is: a slower CPU takes
longer and learns the same.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BratsxError

__all__ = ["DemoPlan", "DemoResult", "DemoStep", "cpu_has_fast_bf16", "demo_plan", "run_demo"]


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True, kw_only=True)
class DemoPlan:
    """Sizes of a demo run: full (minutes on a CPU) or fast (seconds, for tests)."""

    cases: int
    shape: tuple[int, int, int]
    features: tuple[int, ...]
    patch: tuple[int, int, int]
    epochs: int
    iterations: int
    val_every: int
    amp: bool


def demo_plan(fast: bool = False, amp: bool | None = None) -> DemoPlan:
    """The default demo, or toy sizes with ``fast``; ``amp`` defaults to bf16 where the CPU has it.

    The default trains 400 steps on 48^3 patches of 16 cases of 96x96x80: sized so that a 2-core CPU
    without bf16 finishes the whole demo in minutes, and the held-out cases learn all three regions
    (``benchmarks/demo_timing.py`` measures both).
    """
    amp = cpu_has_fast_bf16() if amp is None else amp
    if fast:
        return DemoPlan(cases=4, shape=(40, 40, 32), features=(4, 8, 16), patch=(16, 16, 16), epochs=1,
                        iterations=3, val_every=1, amp=False)
    return DemoPlan(cases=16, shape=(96, 96, 80), features=(16, 32, 64, 128), patch=(48, 48, 48), epochs=8,
                    iterations=50, val_every=4, amp=amp)


@dataclass(frozen=True)
class DemoStep:
    """A progress event: step ``index`` of ``total`` starts."""

    index: int
    total: int
    name: str


@dataclass(frozen=True)
class DemoResult:
    """Where everything went and what it measured."""

    directory: Path
    cases_dir: Path
    run_dir: Path
    model_dir: Path
    predictions: Path
    records: list
    summary: Path
    training: Any
    export: Any
    inference_seconds: float
    seconds: float


def run_demo(
    directory: Path, plan: DemoPlan, *, overwrite: bool = False, on_event: Callable[[object], None] | None = None
) -> DemoResult:
    """Synthesise cases, train, export and segment the held-out cases, keeping every artefact in ``directory``.

    Args:
        directory: folder for everything (cases/, runs/demo, models/demo, predictions/).
        plan: sizes (see :func:`demo_plan`).
        overwrite: replace an earlier demo in ``directory``.
        on_event: receives :class:`DemoStep` events, the trainer's events and each case's record.

    Raises:
        BratsxError: ``directory`` holds something and ``overwrite`` is off; or a step fails.
    """
    from .cases import discover_cases
    from .export.pipeline import export_model
    from .runtime import ModelSpec, RunnerSpec, run_batch
    from .synth import write_synthetic_dataset
    from .trainer.config import TrainConfig, auto_gpus
    from .trainer.loop import train
    from .workspace import Workspace

    emit = on_event or (lambda event: None)
    if directory.exists() and any(directory.iterdir()):
        if not overwrite:
            raise BratsxError(f"{directory} is not empty; pass --overwrite to replace an earlier demo there")
        shutil.rmtree(directory)
    started = time.perf_counter()
    space = Workspace(directory)
    cases_dir, run_dir, model_dir = directory / "cases", space.runs_dir / "demo", space.model_dir("demo")

    emit(DemoStep(1, 4, "synthetic cases"))
    write_synthetic_dataset(cases_dir, plan.cases, plan.shape, seed=2026)

    emit(DemoStep(2, 4, "training"))
    config = TrainConfig(
        data_dir=cases_dir, run_dir=run_dir, cache_dir=directory / "cache", epochs=plan.epochs,
        iterations=plan.iterations, patch=plan.patch, features=plan.features, val_every=plan.val_every,
        val_fraction=0.25, workers=0 if plan.cases < 8 else 1, amp=plan.amp,
        gpus=auto_gpus(),
    )
    space.set_latest_run(run_dir)
    trained = train(config, on_event=emit)
    if trained.stopped == "interrupted":
        raise BratsxError(f"the demo's training was interrupted; its run is kept in {run_dir}")

    emit(DemoStep(3, 4, "export"))
    exported = export_model(run_dir, model_dir)
    space.set_default_model(model_dir)

    emit(DemoStep(4, 4, "inference on the held-out cases"))
    held_out = set(json.loads((run_dir / "splits.json").read_text())[0]["val"])
    cases = [c for c in discover_cases(cases_dir) if c.case_id in held_out]
    out = directory / "predictions"
    with RunnerSpec(ModelSpec(paths=(model_dir,))).open() as runner:
        inferred = run_batch(cases, runner, out, on_case=emit)
    return DemoResult(directory, cases_dir, run_dir, model_dir, out, inferred.records, inferred.summary, trained,
                      exported, inferred.wall_seconds, time.perf_counter() - started)
