"""``bratsx report``: overlay pictures and a self-contained QC report of a batch, or a training run's curves."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..extras import optional_import
from ..labels import Modality
from ..report.flags import FlagOptions
from ..report.options import RenderOptions
from .common import console, err_console, progress_bar, reports_errors
from .options import LabelsOption

_FLAGS, _RENDER = FlagOptions(), RenderOptions()


@reports_errors
def report(
    path: Annotated[Path, typer.Argument(help="A bratsx infer output folder, or a training run folder "
                                              "(holding metrics.jsonl).", exists=True, file_okay=False)],
    cases: Annotated[Optional[Path], typer.Option(
        "--cases", "-c", help="The cases the predictions were made from (backgrounds and references).",
        exists=True, file_okay=False, show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder. [default: PATH/report]",
                                                file_okay=False, show_default=False)] = None,
    background: Annotated[Modality, typer.Option(case_sensitive=False, help="Modality under the labels.")
                          ] = _RENDER.background,
    gif: Annotated[bool, typer.Option("--gif", help="Also draw an axial fly-through GIF of each tumour.")] = False,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help="Worker processes drawing cases. "
                                                "[default: the usable cores, at most 8]", show_default=False)] = None,
    qc: Annotated[Optional[Path], typer.Option("--qc", help="A qc.csv exported from an earlier report: show its "
                                               "verdicts.", exists=True, dir_okay=False, show_default=False)] = None,
    dice_below: Annotated[float, typer.Option(min=0.0, max=1.0, help="Flag cases with a Dice below this in any "
                                              "region.")] = _FLAGS.dice_below,
    outlier_z: Annotated[float, typer.Option(min=0.0, help="Flag cases whose robust z-score of WT volume exceeds "
                                             "this.")] = _FLAGS.outlier_z,
    opacity: Annotated[float, typer.Option(min=0.0, max=1.0, help="Opacity of the label colours.")] = _RENDER.alpha,
    convention: LabelsOption = None,
) -> None:
    """Draw every case of PATH and write PATH/report/report.html, one file that opens offline.

    Per case: the axial, coronal and sagittal planes through the largest tumour area, the
    prediction and the reference side by side over the background, in one colour table (NCR red,
    edema green, ET yellow) and the radiological orientation. The report has a sortable,
    filterable table with thumbnails, QC flags, and pass/fail verdicts exported to qc.csv.
    For a training run folder: its loss and validation Dice curves.
    """
    optional_import("PIL", "report", purpose="bratsx report")  # Pillow draws the pictures
    from ..report.build import (
        CASES_FOLDER,
        ReportOptions,
        build_batch_report,
        build_run_report,
        default_jobs,
        is_run_dir,
    )
    command = shlex.join(["bratsx", *sys.argv[1:]])
    if is_run_dir(path):
        html = build_run_report(path, out, command)
        console.print(f"training run report: {escape(str(html))} ({html.stat().st_size / 1e3:.0f} KB)")
        return
    if cases is None:
        err_console.print("[yellow]no --cases given: the report has no pictures[/]")
    options = ReportOptions(
        render=RenderOptions(background=background, gif=gif, alpha=opacity, convention=convention),
        flags=FlagOptions(dice_below=dice_below, outlier_z=outlier_z),
        jobs=jobs or default_jobs(), qc=qc, command=command,
    )
    with progress_bar() as progress:
        task = progress.add_task("drawing", total=None)
        result = build_batch_report(path, cases, out, options, on_case=lambda _: progress.advance(task))
    drawn = [r.images for r in result.rows if r.images is not None and r.images.error is None]
    for case_id, error in result.picture_errors:
        err_console.print(f"[yellow]{escape(case_id)}: no picture: {escape(error)}[/]")
    flagged = sum(bool(r.flags) for r in result.rows)
    per_case = sum(i.seconds for i in drawn) / len(drawn) if drawn else 0.0
    console.print(f"{len(result.rows)} case(s), {len(drawn)} drawn ({per_case:.2f} s per case), "
                  f"{flagged} flagged, {result.seconds:.1f} s in all")
    console.print(f"report: {escape(str(result.html))} ({result.html.stat().st_size / 1e6:.1f} MB); "
                  f"open it in a browser. Pictures: {escape(str(result.html.parent / CASES_FOLDER))}")
