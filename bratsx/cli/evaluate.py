"""``bratsx evaluate``: score segmentations from any tool against reference labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..runtime.records import CaseStatus
from .common import console, reports_errors
from .options import LabelsOption
from .render import status_cell


@reports_errors
def evaluate(
    predictions: Annotated[Path, typer.Argument(help="Predicted segmentations: <id>.nii.gz files or case folders.",
                                                exists=True, file_okay=False)],
    references: Annotated[Path, typer.Argument(help="Reference segmentations, same naming.", exists=True,
                                               file_okay=False)],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where metrics.csv and summary.json go. "
                                                "[default: PREDICTIONS/evaluation]", file_okay=False,
                                                show_default=False)] = None,
    convention: LabelsOption = None,
    lesion_wise: Annotated[bool, typer.Option(
        "--lesion-wise", help="Also the lesion-wise Dice and HD95 per region (26-connected lesions), with the "
                              "label set's dilation and minimum volume (2023 glioma: 3 voxels, 50 mm3).")] = False,
    allow_missing: Annotated[bool, typer.Option(
        "--allow-missing", help="Exit 0 even when a reference has no prediction (it is still reported).")] = False,
) -> None:
    """Dice, sensitivity, specificity, HD95 (mm) and volumes per region of the label set, BraTS rules.

    The regions are those the set's challenge evaluates (WT, TC, ET; with brats2024 also NETC, SNFH and
    the resection cavity RC, scored apart from the tumour).

    Files are matched by case id. Empty masks follow BraTS: both empty scores Dice 1 and HD95 0;
    one empty scores Dice 0 and HD95 373.13. Every case of either folder is reported: scored, failed,
    missing (a reference without a prediction), unreferenced or ambiguous (two candidate files). Exits
    with code 1 when a case cannot be scored or a reference has no prediction (see --allow-missing).
    """
    from ..metrics import scored_regions
    from ..runtime.evaluate import evaluate_directories
    from ..runtime.summary import aggregate, write_summary

    results = evaluate_directories(predictions, references, convention, lesion_wise)
    out = out or predictions / "evaluation"  # never over infer's own metrics.csv and summary.json
    out.mkdir(parents=True, exist_ok=True)
    write_summary(results, out, {"predictions": str(predictions), "references": str(references)}, 0.0)
    table = Table(title=f"{sum(r.status == 'ok' for r in results)} of {len(results)} case(s) scored")
    table.add_column("metric")
    regions = scored_regions(r.metrics for r in results)
    for region in regions:
        table.add_column(f"{region} mean ± std (median)")
    stats = aggregate(results)
    metrics = ("dice", "sensitivity", "specificity", "hd95", "volume_pred_ml", "volume_ref_ml")
    for metric in metrics + (("lesion_dice", "lesion_hd95") if lesion_wise else ()):
        cells = []
        for region in regions:
            s = stats.get(f"{metric}_{region}")
            cells.append(f"{s['mean']:.3f} ± {s['std']:.3f} ({s['median']:.3f})" if s else "")
        table.add_row(metric, *cells)
    console.print(table)
    for r in results:
        if r.status != CaseStatus.OK:
            console.print(f"{status_cell(r)}")
    counts = ", ".join(f"{sum(r.status == s for r in results)} {s}" for s in dict.fromkeys(r.status for r in results))
    console.print(f"{counts}; metrics: {escape(str(out / 'metrics.csv'))}, {escape(str(out / 'summary.json'))}")
    failing = {"failed", "ambiguous"} | (set() if allow_missing else {"missing"})
    if any(r.status in failing for r in results):
        raise typer.Exit(1)
