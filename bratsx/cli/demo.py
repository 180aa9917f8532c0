"""``bratsx demo``: synthesise, train, export and infer in one command, with every artefact kept."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import BratsxError
from .common import console, err_console, progress_bar, reports_errors


@reports_errors
def demo(
    directory: Annotated[Path, typer.Argument(help="Folder for everything the demo makes.", file_okay=False)] = Path(
        "bratsx-demo"),
    fast: Annotated[bool, typer.Option("--fast", help="Tiny sizes: runs in seconds (a smoke test).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier demo in DIRECTORY.")] = False,
) -> None:
    """Run the whole pipeline on synthetic cases: synth -> train -> export -> infer -> metrics.

    Makes 16 synthetic BraTS-like cases, trains a small U-Net for at most 5 minutes (bf16 on CPUs that
    support it), exports it to ONNX with its contract, segments the held-out cases with the fastest
    installed backend and prints their Dice and latency. Everything stays in DIRECTORY.
    """
    import torch

    from ..cases import discover_cases
    from ..contract import read_onnx_contract
    from ..demo import demo_plan
    from ..export.pipeline import export_model
    from ..runtime.infer import InferOptions, infer_cases
    from ..runtime.summary import write_summary
    from ..synth import write_synthetic_dataset
    from ..trainer.config import TrainConfig
    from ..trainer.loop import train
    from .infer import BackendChoice, _open, _render
    from .train import _Display

    if directory.exists() and any(directory.iterdir()):
        if not overwrite:
            raise BratsxError(f"{directory} is not empty; pass --overwrite to replace an earlier demo there")
        shutil.rmtree(directory)
    plan = demo_plan(fast)
    started = time.perf_counter()

    console.rule("1/4 synthetic cases")
    with progress_bar() as progress:
        task = progress.add_task("synthesising", total=plan.cases)
        write_synthetic_dataset(directory / "cases", plan.cases, plan.shape, seed=2026,
                                on_case=lambda _: progress.advance(task))
    console.print(f"{plan.cases} cases of {plan.shape} in {directory / 'cases'}")

    console.rule("2/4 training")
    config = TrainConfig(
        data_dir=directory / "cases", run_dir=directory / "run", cache_dir=directory / "cache", epochs=plan.epochs,
        iterations=plan.iterations, patch=plan.patch, features=plan.features, val_every=plan.val_every,
        val_fraction=0.25, workers=0 if fast else 1, amp=plan.amp, max_time=plan.max_seconds,
        gpus=1 if torch.cuda.is_available() else 0,
    )
    columns = [TextColumn("[progress.description]{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err_console) as progress:
        trained = train(config, on_event=_Display(progress))
    if trained.stopped == "interrupted":
        raise typer.Exit(130)

    console.rule("3/4 export")
    with err_console.status("exporting") as status:
        report = export_model(directory / "run", directory / "model", on_step=lambda name: status.update(name))
    console.print(f"{report.onnx} (ONNX Runtime vs PyTorch: relative error {report.agreement.max_rel:.1e})")

    console.rule("4/4 inference on the held-out cases")
    held_out = set(json.loads((directory / "run" / "splits.json").read_text())[0]["val"])
    cases = [c for c in discover_cases(directory / "cases") if c.case_id in held_out]
    backend, _ = _open(BackendChoice.AUTO, report.onnx, None, "cpu", False)
    contract = read_onnx_contract(report.onnx)
    out = directory / "predictions"
    inferred = time.perf_counter()
    with progress_bar() as progress:
        task = progress.add_task(f"segmenting ({backend.name})", total=len(cases))
        results = infer_cases(cases, [backend], contract, out, InferOptions(),
                              on_case=lambda result: progress.advance(task))
    wall = time.perf_counter() - inferred
    summary = write_summary(results, out, {"backend": backend.name, "device": backend.device,
                                           "precision": backend.precision, "models": [str(report.onnx)]}, wall)
    _render(results, out, summary, wall)

    table = Table(title=f"demo done in {(time.perf_counter() - started) / 60:.1f} min", show_header=False)
    table.add_row("cases", str(directory / "cases"))
    table.add_row("training run", f"{directory / 'run'} (curves: training_curves.png)")
    table.add_row("model", str(report.onnx))
    table.add_row("segmentations", f"{out} (metrics.csv, summary.json)")
    table.add_row("next", f"bratsx infer YOUR_CASES --model {report.onnx}")
    console.print(table)
    if any(r.error for r in results):
        raise typer.Exit(1)
