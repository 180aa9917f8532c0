"""``bratsx export``: a checkpoint into a self-describing model folder, each file verified before it is kept."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import BratsxError
from ..export.options import ExportOptions, Int8Method
from .common import console, err_console, reports_errors
from .options import (
    CalibCasesOption,
    CalibDirOption,
    Fp16Option,
    Int8GateDirOption,
    Int8KeepEndsOption,
    Int8MethodOption,
    Int8Option,
    MaxBatchOption,
    OpsetOption,
    TrtOption,
    TrtOptLevelOption,
    WorkspaceOption,
    default_of,
    export_options,
)
from .render import render_export

T = TypeVar("T")


def _model_name(source: Path) -> str:
    """A run directory's name, or the name of the run a checkpoint lies in."""
    source = source.resolve()
    if source.is_file() and source.parent.name == "checkpoints":
        return source.parent.parent.name
    return source.name if source.is_dir() else source.stem


@reports_errors
def export(
    sources: Annotated[Optional[list[Path]], typer.Argument(metavar="[RUN]...",
        help="A run directory (its best checkpoint is used) or a checkpoint file; several make one ensemble folder "
             "(their logits averaged). [default: the workspace's latest run]", exists=True,
        show_default=False)] = None,
    folds: Annotated[Optional[Path], typer.Option(
        "--folds", help="A cross-validation folder (bratsx train --folds): every trained fold, as one ensemble.",
        exists=True, file_okay=False, show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="The model folder to write. [default: WORKSPACE/models/RUN_NAME]", file_okay=False,
        show_default=False)] = None,
    fp16: Fp16Option = False,
    trt: TrtOption = False,
    int8: Int8Option = False,
    opset: OpsetOption = default_of(ExportOptions, "opset"),
    max_batch: MaxBatchOption = default_of(ExportOptions, "max_batch"),
    calib_dir: CalibDirOption = None,
    calib_cases: CalibCasesOption = default_of(ExportOptions, "calibration_cases"),
    trt_opt_level: TrtOptLevelOption = default_of(ExportOptions, "trt_optimization_level"),
    int8_gate_dir: Int8GateDirOption = None,
    int8_method: Int8MethodOption = Int8Method.PTQ,
    int8_keep_ends: Int8KeepEndsOption = default_of(ExportOptions, "int8_keep_ends"),
    workspace: WorkspaceOption = None,
) -> None:
    """Export a trained model into a model folder: ONNX with its inference contract embedded, plus model.json.

    model.onnx takes image [N, 4, D, H, W] float32 (FLAIR, T1, T1ce, T2, z-scored inside the brain;
    N dynamic, D H W = the training patch) and returns probabilities [N, C, D, H, W] (sigmoid WT, TC,
    ET, or softmax over 4 classes). Its metadata holds the contract bratsx infer reads. The export is
    refused when ONNX Runtime and PyTorch differ by more than 1e-4; reduced-precision files are kept
    only when they pass their accuracy gate. The folder becomes the workspace's default model, which
    `bratsx infer` uses when no --model is given.
    """
    from ..export.pipeline import export_model
    from ..workspace import Workspace

    space = Workspace.locate(workspace)
    options = export_options(fp16=fp16, trt=trt, int8=int8, opset=opset, max_batch=max_batch, calib_dir=calib_dir,
                             calib_cases=calib_cases, trt_opt_level=trt_opt_level,
                             int8_gate_dir=int8_gate_dir, int8_method=int8_method, int8_keep_ends=int8_keep_ends)
    if folds is not None or (sources and len(sources) > 1):
        _export_ensemble(space, folds, sources or [], out, options)
        return
    source = sources[0] if sources else space.latest_run()
    out = out or space.model_dir(_model_name(source))
    report = _exported(space, out, lambda step: export_model(source, out, options, on_step=step))

    render_export(f"exported {escape(str(source))} -> {escape(str(out))}", report)
    console.print(f"default model of workspace {escape(str(space.root))}: {escape(str(out))}")


def _exported(space, out: Path, export_into: Callable[[Callable[[str], None]], T]) -> T:
    """Run an export with a status line showing its steps, then make ``out`` the workspace's default model."""
    with err_console.status("exporting") as status:
        result = export_into(lambda name: status.update(name))
    space.set_default_model(out)
    return result


def _export_ensemble(space, folds: Optional[Path], sources: list[Path], out: Optional[Path],
                     options: ExportOptions) -> None:
    """``bratsx export RUN_A RUN_B ...`` or ``--folds CV``: one ensemble model folder, made the default model."""
    from ..crossval import fold_run_dir, read_folds
    from ..export.pipeline import export_ensemble

    if folds is not None:
        if sources:
            raise BratsxError("give either runs or --folds, not both")
        sources = [fold_run_dir(folds, k) for k in range(len(read_folds(folds)))]
        untrained = [str(s) for s in sources if not (s / "checkpoints").is_dir()]
        if untrained:
            raise BratsxError(f"--folds {folds}: fold(s) not trained yet: {', '.join(untrained)}; train them with "
                              "bratsx train DATA --folds N --fold all")
    out = out or space.model_dir(folds.name if folds is not None else f"{_model_name(sources[0])}-ensemble")
    reports = _exported(space, out, lambda step: export_ensemble(sources, out, options, on_step=step))
    table = Table(title=f"exported an ensemble of {len(reports)} -> {escape(str(out))}")
    table.add_column("member")
    table.add_column("source")
    table.add_column("ORT vs PyTorch")
    for report, source in zip(reports, sources):
        table.add_row(escape(report.onnx.parent.name), escape(str(source)), f"max abs {report.agreement.max_abs:.2e}")
    console.print(table)
