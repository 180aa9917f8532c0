"""``bratsx summarize``: metrics.csv and summary.json rebuilt from the records of one or more output folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..cases import Layout
from .common import console, err_console, reports_errors


@reports_errors
def summarize(
    out_dirs: Annotated[list[Path], typer.Argument(help="Output folders of bratsx infer (e.g. one per part).",
                                                   exists=True, file_okay=False, show_default=False)],
    cases: Annotated[Optional[Path], typer.Option(
        "--cases", help="The cases folder of the run: list every case no folder has finished.", exists=True,
        file_okay=False, show_default=False)] = None,
    layout: Annotated[Optional[Layout], typer.Option(case_sensitive=False, help="Force the case layout of --cases.",
                                                     show_default=False)] = None,
    into: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Where metrics.csv and summary.json go. [default: the first folder]", file_okay=False,
        show_default=False)] = None,
) -> None:
    """Rebuild metrics.csv and summary.json from the per-case records (OUT/records/*.json), merging
    several output folders, e.g. the parts of a --num-parts run or the folders of several machines.

    The metrics are those of one uninterrupted run. With --cases, every case of that folder without a
    finished record is listed (never run, its part lost, or failed) and the exit code is 1.
    """
    from ..cases import discover_cases
    from ..runtime.parts import rebuild_summary

    batch = discover_cases(cases, layout) if cases else None
    rebuilt = rebuild_summary(out_dirs, into or out_dirs[0], batch)
    counts = {}
    for record in rebuilt.records:
        counts[record.status] = counts.get(record.status, 0) + 1
    console.print(f"{len(rebuilt.records)} case(s) from {len(out_dirs)} folder(s): "
                  + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    if rebuilt.duplicates:
        console.print(f"[yellow]{len(rebuilt.duplicates)} case(s) recorded in more than one folder[/] (the latest "
                      f"finished record counts): {escape(', '.join(rebuilt.duplicates))}")
    for case_id, why in rebuilt.missing.items():
        err_console.print(f"[red]not finished[/] {escape(case_id)}: {escape(why)}")
    console.print(f"metrics: {escape(str(rebuilt.summary.with_name('metrics.csv')))}, {escape(str(rebuilt.summary))}")
    if rebuilt.missing:
        err_console.print(f"[red]{len(rebuilt.missing)} case(s) not finished[/]; run bratsx infer again on the "
                          "cases folder (finished cases are reused)")
        raise typer.Exit(1)
