"""``bratsx demo``: synthesise, train, export and infer in one command, with every artefact kept."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .common import console, literal, reports_errors


@reports_errors
def demo(
    directory: Annotated[Path, typer.Argument(help="Folder for everything the demo makes.", file_okay=False)] = Path(
        "bratsx-demo"),
    fast: Annotated[bool, typer.Option("--fast", help="Tiny sizes: runs in seconds (a smoke test).")] = False,
    amp: Annotated[Optional[bool], typer.Option(
        "--amp/--no-amp", help="bf16 autocast while training. [default: on where the CPU has AVX512-BF16]",
        show_default=False)
                   ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier demo in DIRECTORY.")] = False,
) -> None:
    """Run the whole pipeline on synthetic cases: synth -> train -> export -> infer -> metrics.

    Makes 16 synthetic BraTS-like cases, trains a small U-Net for a fixed number of steps (so the
    result is the same on any CPU; a slower one takes longer), exports it into a model folder,
    segments the held-out cases with the fastest installed backend and prints their Dice and latency.
    DIRECTORY is a workspace: `bratsx infer CASES --workspace DIRECTORY` then uses the demo's model.
    """
    from ..demo import DemoStep, demo_plan, run_demo
    from ..runtime.records import CaseRecord, CaseStatus
    from .render import TrainingDisplay, render_records, training_progress

    with training_progress() as progress:
        training = TrainingDisplay(progress)

        def show(event: object) -> None:
            if isinstance(event, DemoStep):
                progress.console.rule(f"{event.index}/{event.total} {event.name}")
            elif isinstance(event, CaseRecord):
                progress.console.print(literal(f"{event.case_id}: {event.status}"))
            else:
                training(event)

        result = run_demo(directory, demo_plan(fast, amp), overwrite=overwrite, on_event=show)

    render_records(result.records, result.predictions, result.summary, result.inference_seconds)
    table = Table(title=f"demo done in {result.seconds / 60:.1f} min", show_header=False)
    table.add_row("cases", escape(str(result.cases_dir)))
    table.add_row("training run", escape(f"{result.run_dir} (curves: training_curves.png)"))
    table.add_row("model folder", escape(str(result.model_dir)))
    table.add_row("segmentations", escape(f"{result.predictions} (metrics.csv, summary.json)"))
    table.add_row("next", escape(f"bratsx infer YOUR_CASES --model {result.model_dir}"))
    console.print(table)
    if any(r.status == CaseStatus.FAILED for r in result.records):
        raise typer.Exit(1)
