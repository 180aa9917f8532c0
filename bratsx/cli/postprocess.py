"""``bratsx postprocess``: choose a model folder's post-processing on labelled cases, or undo that choice."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import BratsxError
from ..postprocess_tuning import TuneMetric
from ..runtime.backends import BackendName
from .common import console, progress_bar, reports_errors

app = typer.Typer(help="Post-processing chosen on data: tune a model folder's spec, or undo it.",
                  no_args_is_help=True)


def _scores_table(title: str, before: dict, after: dict) -> Table:
    """Before/after per region for both metrics."""
    table = Table(title=title)
    table.add_column("metric")
    for region in ("WT", "TC", "ET"):
        table.add_column(f"{region} before -> after")
    for metric in (TuneMetric.DICE.value, TuneMetric.LESION_WISE.value):
        table.add_row(metric, *(f"{before[metric][r]:.3f} -> {after[metric][r]:.3f}" for r in ("WT", "TC", "ET")))
    return table


@app.command("tune")
@reports_errors
def tune(
    model: Annotated[Path, typer.Argument(help="The model folder to tune (its model.json is updated).",
                                          exists=True, file_okay=False)],
    cases_dir: Annotated[Optional[Path], typer.Option(
        "--cases", help="Labelled cases the model did NOT train on (its validation split, or a cross-validation's "
                        "held-out folds).", exists=True, file_okay=False, show_default=False)] = None,
    predictions: Annotated[Optional[Path], typer.Option(
        "--predictions", help="Segmentations of the --cases made without post-processing (a cross-validation's "
                              "OUT/oof), used instead of running the model.", exists=True, file_okay=False,
        show_default=False)] = None,
    metric: Annotated[TuneMetric, typer.Option(case_sensitive=False, help="What the search maximises.")
                      ] = TuneMetric.LESION_WISE,
    leave_one_out: Annotated[bool, typer.Option(
        "--leave-one-out", help="Also report each case scored with a spec tuned without it (the honest gain).")
                             ] = False,
    reset: Annotated[bool, typer.Option("--reset", help="Undo the last tuning: restore the spec it replaced.")
                     ] = False,
    backend: Annotated[BackendName, typer.Option(case_sensitive=False, help="Inference engine for the predictions."
                                                 )] = BackendName.AUTO,
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads. [default: all cores]",
                                                   show_default=False)] = None,
) -> None:
    """Grid-search the post-processing (per-region minimum component volume and largest-component ratio, the
    ET -> necrosis volume) on the model's predictions of labelled cases, computed once; print Dice and lesion-wise
    Dice per region before and after; write the spec into the model folder (model.postprocess.json, hashed in
    model.json, the previous spec kept in its history). infer, serve, report and bench then apply it.
    """
    from ..cases import discover
    from ..modelfolder import ModelFolder, reset_postprocess
    from ..postprocess_tuning import collect_tuning_cases, tune_folder, tuning_cases_from_files

    if reset:
        restored = reset_postprocess(ModelFolder.read(model))
        spec = restored.postprocess
        console.print(f"{escape(str(model))}: post-processing reset to "
                      f"{escape(str(spec.to_dict())) if spec else 'the one exported into the model file (none tuned)'}")
        return
    if cases_dir is None:
        raise BratsxError("bratsx postprocess tune: give --cases LABELLED (or --reset to undo the last tuning)")
    ModelFolder.read(model)  # not a model folder: stop before segmenting anything
    found = discover(cases_dir)
    if predictions is not None:
        cases = tuning_cases_from_files(predictions, found.cases)
    else:
        with progress_bar() as progress:
            task = progress.add_task("predictions", total=len(found.cases))
            cases = collect_tuning_cases(model, found.cases, backend.value, threads,
                                         on_case=lambda _: progress.advance(task))
    result = tune_folder(model, cases, metric, leave_one_out)
    console.print(_scores_table(f"{len(cases)} case(s), tuned for {metric.value} (on these cases)", result.before,
                                result.after))
    if result.loo is not None:
        console.print(_scores_table("leave-one-out (each case with a spec tuned without it)", result.loo.before,
                                    result.loo.after))
    console.print(f"spec written to {escape(str(model))}: {escape(str(result.spec.to_dict()))}")
