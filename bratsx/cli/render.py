"""Rich rendering shared by commands: case tables, per-region numbers, the model line.

Everything here escapes untrusted strings (case ids, paths, error messages), so a case id such as
``[bold red]x`` prints as written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from ..runtime.records import CaseRecord
from .common import console, err_console

__all__ = ["per_region", "render_records", "status_cell"]

REGIONS = ("WT", "TC", "ET")


def per_region(values: dict[str, float] | None, digits: int = 3) -> str:
    """``0.912/0.850/0.801`` for a dict keyed by region, empty when there is none."""
    return "/".join(f"{values[r]:.{digits}f}" for r in REGIONS) if values else ""


def status_cell(record: CaseRecord) -> str:
    """The status column: ok, reused, a stale case redone, or the error in red."""
    if record.status == "ok":
        text = "ok" if not record.note else escape(record.note)
        return f"{text} [yellow](metrics: {escape(record.metrics_error)})[/]" if record.metrics_error else text
    if record.status == "failed":
        return f"[red]{escape(record.error or 'failed')}[/]"
    return f"[yellow]{escape(record.status)}: {escape(record.error or record.note or '')}[/]"


def render_records(records: Sequence[CaseRecord], out: Path, summary: Path, wall: float) -> None:
    """The per-case table of an inference run, then where its files are."""
    table = Table(title=f"{len(records)} case(s) -> {escape(str(out))}")
    for column in ("case", "status", "Dice WT", "Dice TC", "Dice ET", "HD95 WT", "WT mL", "seconds"):
        table.add_column(column, no_wrap=column != "status")
    for r in records:
        m = r.metrics or {}
        table.add_row(escape(r.case_id), status_cell(r),
                      *(f"{m[k]:.3f}" if k in m else "" for k in ("dice_WT", "dice_TC", "dice_ET")),
                      f"{m['hd95_WT']:.1f}" if "hd95_WT" in m else "",
                      f"{r.volumes_ml['WT']:.1f}" if r.volumes_ml else "",
                      f"{sum(r.seconds.values()):.1f}" if r.seconds else "")
    console.print(table)
    failed = [r for r in records if r.status == "failed"]
    if failed:
        err_console.print(f"[red]{len(failed)} case(s) failed[/]; the others were written")
    console.print(f"{wall:.1f} s in all; metrics and latency: {escape(str(out / 'metrics.csv'))}, "
                  f"{escape(str(summary))}")
