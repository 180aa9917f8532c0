"""Rich rendering shared by commands: case tables, per-region numbers, the model line.

Everything here shows untrusted strings (case ids, paths, error messages) verbatim through
:func:`~bratsx.cli.common.literal`, so a case id such as ``[bold red]x`` prints as written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ..runtime.records import CaseRecord, CaseStatus, case_seconds
from .common import console, err_console, literal, progress_bar

if TYPE_CHECKING:  # the export pipeline imports torch; the CLI renders its report without it
    from ..export.pipeline import ExportReport

__all__ = ["TrainingDisplay", "batch_progress", "per_region", "render_export", "render_records", "status_cell",
           "training_progress"]

REGIONS = ("WT", "TC", "ET")


@contextmanager
def batch_progress(cases: int) -> Iterator[tuple[Callable[[CaseRecord], None], Callable[[str, int, int], None]]]:
    """A batch's progress display: one bar for the cases, one per running case for its tiles.

    Yields:
        ``(on_case, on_tiles)`` for :func:`~bratsx.runtime.batch.run_batch`.
    """
    with progress_bar() as progress:
        task = progress.add_task("cases", total=cases)
        tiles: dict[str, TaskID] = {}

        def on_tiles(case_id: str, done: int, total: int) -> None:
            if case_id not in tiles:
                tiles[case_id] = progress.add_task(f"tiles of {escape(case_id)}", total=total)
            progress.update(tiles[case_id], completed=done)

        def on_case(record: CaseRecord) -> None:
            progress.advance(task)
            if record.case_id in tiles:
                progress.remove_task(tiles.pop(record.case_id))

        yield on_case, on_tiles


def per_region(values: dict[str, float] | None, digits: int = 3) -> str:
    """``0.912/0.850/0.801`` for a dict keyed by region, empty when there is none."""
    return "/".join(f"{values[r]:.{digits}f}" for r in REGIONS) if values else ""


def status_cell(record: CaseRecord) -> Text:
    """The status column: ok, reused, a stale case redone, or the error in red."""
    if record.status == CaseStatus.OK:
        cell = literal(record.note or "ok")
        if record.metrics_error:
            cell.append_text(literal(f" (metrics: {record.metrics_error})", "yellow"))
        return cell
    if record.status == CaseStatus.FAILED:
        return literal(record.error or "failed", "red")
    return literal(f"{record.status}: {record.error or record.note or ''}", "yellow")


def render_records(records: Sequence[CaseRecord], out: Path, summary: Path | None, wall: float) -> None:
    """The per-case table of an inference run, then where its files are (``summary`` None: not written)."""
    table = Table(title=Text.assemble(f"{len(records)} case(s) -> ", literal(out)))
    for column in ("case", "status", "Dice WT", "Dice TC", "Dice ET", "HD95 WT", "WT mL", "seconds"):
        table.add_column(column, no_wrap=column != "status")
    for r in records:
        m = r.metrics or {}
        table.add_row(literal(r.case_id), status_cell(r),
                      *(f"{m[k]:.3f}" if k in m else "" for k in ("dice_WT", "dice_TC", "dice_ET")),
                      f"{m['hd95_WT']:.1f}" if "hd95_WT" in m else "",
                      f"{r.volumes_ml['WT']:.1f}" if r.volumes_ml else "",
                      f"{case_seconds(r.seconds):.1f}" if r.seconds else "")
    console.print(table)
    failed = [r for r in records if r.status == CaseStatus.FAILED]
    if failed:
        err_console.print(f"[red]{len(failed)} case(s) failed[/]; the others were written")
    if summary is not None:
        console.print(Text.assemble(f"{wall:.1f} s in all; metrics and latency: ", literal(out / "metrics.csv"),
                                    ", ", literal(summary)))


def training_progress() -> Progress:
    """The progress display of a training run: cache building, then a step bar with loss and lr."""
    columns = [TextColumn("[progress.description]{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=err_console)


class TrainingDisplay:
    """Renders training events with Rich: cache progress, a step bar, validation lines."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.cache_task = None
        self.train_task = None

    def __call__(self, event) -> None:
        from ..trainer.loop import CacheProgress, CasesPassedOver, EpochDone, StepDone, TrainingStarted, ValidationDone

        if isinstance(event, CasesPassedOver):
            for line in event.lines:
                self.progress.console.print(literal(f"passed over {line}", "yellow"))
        elif isinstance(event, CacheProgress):
            if self.cache_task is None:
                self.cache_task = self.progress.add_task("preprocessing cases", total=event.total, info="")
            self.progress.update(self.cache_task, completed=event.done,
                                 info=f"{event.case_id} ({'built' if event.built else 'cached'})")
        elif isinstance(event, TrainingStarted):
            console.print(
                f"training on {event.train_cases} case(s), validating on {event.val_cases}; "
                f"{event.device}, {event.precision}, {event.parallel}"
            )
            if event.initialised:
                self.progress.console.print(literal(event.initialised))
            self.train_task = self.progress.add_task(
                "training", total=event.total_steps, completed=event.start_step, info=""
            )
        elif isinstance(event, StepDone):
            self.progress.update(
                self.train_task, completed=event.step,
                description=f"epoch {event.epoch}",
                info=f"loss {event.epoch_loss:.4f}  lr {event.lr:.2e}",
            )
        elif isinstance(event, ValidationDone):
            scores = "  ".join(f"{k} {v:.3f}" for k, v in event.dice.items() if k != "mean")
            marker = "  [green]best[/]" if event.best else ""
            self.progress.console.print(
                f"epoch {event.epoch}: validation Dice {scores}  mean {event.dice['mean']:.3f}{marker}")
        elif isinstance(event, EpochDone):
            record = event.record
            summary = (f"loss {record['train_loss']:.4f}  {record['it_per_s']:.2f} it/s  "
                       f"data wait {100 * record['data_wait_fraction']:.0f}%")
            self.progress.update(self.train_task, info=summary)
            if not self.progress.console.is_terminal:  # a log file: one line per epoch instead of a bar
                self.progress.console.print(f"epoch {record['epoch']}: {summary}")


def render_export(title: str, report: ExportReport) -> None:
    """The files ``bratsx export`` or ``bratsx import`` wrote, each with the check it passed."""
    table = Table(title=title)
    table.add_column("file")
    table.add_column("check")
    checks = [("ORT", report.agreement), ("OpenVINO f32", report.openvino_agreement)]
    table.add_row(report.onnx.name, "; ".join(f"{runtime} vs PyTorch: max abs {agreement.max_abs:.2e}, relative "
                                              f"{agreement.max_rel:.2e}" for runtime, agreement in checks
                                              if agreement is not None) + " (limit 1e-4)")
    if report.int8:
        int8 = report.gates["int8"]
        table.add_row(f"{report.int8.name} (+ .bin)",
                      f"{report.int8_gate.describe()} on held-out {', '.join(int8['gate_cases'])}; calibrated on "
                      f"{', '.join(int8['calibration_cases'])} ({int8['method']}); {int8['arithmetic']}")
    if report.fp16_onnx:
        table.add_row(report.fp16_onnx.name, f"{report.fp16_gate.describe()}; {report.gates['fp16']['arithmetic']}")
    if report.engine:
        table.add_row(report.engine.name,
                      f"{report.engine_gate.describe()}; built in {report.engine_build_seconds:.0f} s")
    table.add_row("model.json", "contract, source, gates, file hashes")
    console.print(table)
    if report.int8_refusal:
        console.print(f"[yellow]{escape(report.int8_refusal)}[/yellow]")

