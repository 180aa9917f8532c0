"""``bratsx cv``: what a cross-validation (``bratsx train --folds``) reached, from its out-of-fold predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from .common import console, reports_errors

app = typer.Typer(help="Cross-validation results (bratsx train --folds).", no_args_is_help=True)
_REGIONS = ("WT", "TC", "ET")


def _cells(scores: dict[str, Any]) -> list[str]:
    return [f"{scores['cases']}", *(f"{scores[m][r]:.3f}" if scores[m][r] is not None else "-"
                                    for m in ("dice", "lesion_dice") for r in _REGIONS)]


def render_summary(summary: dict[str, Any], cv_dir: Path) -> None:
    """Per-fold and pooled out-of-fold Dice and lesion-wise Dice, as a table."""
    table = Table(title=f"out-of-fold scores of {escape(str(cv_dir))}")
    for column in ("fold", "cases", *(f"Dice {r}" for r in _REGIONS), *(f"lesion-wise {r}" for r in _REGIONS)):
        table.add_column(column)
    for fold in summary["folds"]:
        table.add_row(str(fold["fold"]), *_cells(fold))
    table.add_row("pooled", *_cells(summary["pooled"]))
    console.print(table)
    missing = summary["pooled"]["missing"]
    if missing:
        console.print(f"{len(missing)} case(s) without out-of-fold predictions yet (folds not trained): "
                      f"{escape(', '.join(missing))}")


@app.command("summary")
@reports_errors
def summary(
    cv_dir: Annotated[Path, typer.Argument(help="The cross-validation folder (bratsx train --folds ... --out/--name).",
                                           exists=True, file_okay=False)],
) -> None:
    """Per-fold and pooled out-of-fold Dice and lesion-wise Dice, as a table and CV_DIR/cv_summary.json."""
    from ..crossval import SUMMARY_FILE, cv_summary

    render_summary(cv_summary(cv_dir), cv_dir)
    console.print(f"written: {escape(str(cv_dir / SUMMARY_FILE))}")
