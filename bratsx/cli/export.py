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
from .options import WorkspaceOption, default_of
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
    fp16: Annotated[bool, typer.Option("--fp16", help="Also write model.fp16.onnx, refused unless its "
                                                      "WT/TC/ET Dice against fp32 is >= 0.999.")] = False,
    trt: Annotated[bool, typer.Option("--trt", help="Also build an FP16 TensorRT engine (needs TensorRT and an "
                                                    "NVIDIA GPU; implies --fp16), gated the same way.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Also write model.int8.xml/.bin, an OpenVINO IR quantized to "
                                                      "int8 by NNCF on calibration cases' tiles (the openvino-int8 "
                                                      "backend), shipped only if its WT/TC/ET Dice against fp32 is "
                                                      ">= 0.99 on held-out cases (the model's validation cases, or "
                                                      "--int8-gate-dir); otherwise left out, saying why.")] = False,
    int8_gate_dir: Annotated[Optional[Path], typer.Option(
        "--int8-gate-dir", help="Held-out cases the int8 gate runs on (none may be a calibration case). [default: "
                                "the validation cases of the model's split in --calib-dir; synthetic without it]",
        exists=True, file_okay=False, show_default=False)] = None,
    int8_method: Annotated[Int8Method, typer.Option(
        case_sensitive=False, help="ptq: NNCF post-training quantization; accuracy-control: NNCF's "
                                   "quantize_with_accuracy_control, reverting the convolutions that cost most Dice "
                                   "against fp32 on the calibration cases.")] = Int8Method.PTQ,
    int8_keep_ends: Annotated[bool, typer.Option(
        help="Keep the first convolution and the output head in f32.")] = default_of(ExportOptions, "int8_keep_ends"),
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = default_of(ExportOptions, "opset"),
    max_batch: Annotated[int, typer.Option(min=1, help="Largest batch of tiles the model accepts.")
                         ] = default_of(ExportOptions, "max_batch"),
    calib_dir: Annotated[Optional[Path], typer.Option(
        "--calib-dir", help="Cases to run the fp16/engine gates on and to calibrate int8 on (with the model's split: "
                            "its training cases there). [default: synthetic cases]", exists=True,
        file_okay=False, show_default=False)] = None,
    calib_cases: Annotated[int, typer.Option(min=1, help="How many cases (of --calib-dir) the fp16/engine gates run "
                                                         "on and int8 calibrates on.")
                           ] = default_of(ExportOptions, "calibration_cases"),
    trt_opt_level: Annotated[int, typer.Option(min=0, max=5, help="TensorRT builder optimisation level.")
                             ] = default_of(ExportOptions, "trt_optimization_level"),
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
    options = ExportOptions(fp16=fp16 or trt, trt=trt, int8=int8, opset=opset, max_batch=max_batch,
                            calibration_dir=calib_dir, calibration_cases=calib_cases, int8_gate_dir=int8_gate_dir,
                            int8_method=int8_method.value, int8_keep_ends=int8_keep_ends,
                            trt_optimization_level=trt_opt_level)
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
