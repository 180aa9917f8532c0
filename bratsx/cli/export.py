"""``bratsx export``: a checkpoint into self-describing model files, each verified before it is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .common import console, err_console, reports_errors


@reports_errors
def export(
    source: Annotated[Path, typer.Argument(help="A run directory (its best checkpoint is used) or a checkpoint file.",
                                           exists=True)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for model.onnx and the other files.",
                                      file_okay=False)],
    fp16: Annotated[bool, typer.Option("--fp16", help="Also write model.fp16.onnx, refused unless its "
                                                      "WT/TC/ET Dice against fp32 is >= 0.999.")] = False,
    trt: Annotated[bool, typer.Option("--trt", help="Also build an FP16 TensorRT engine (needs TensorRT and an "
                                                    "NVIDIA GPU; implies --fp16), gated the same way.")] = False,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 20,
    max_batch: Annotated[int, typer.Option(min=1, help="Largest batch of tiles the model accepts.")] = 8,
    calib_dir: Annotated[Optional[Path], typer.Option(
        "--calib-dir", help="Cases to run the accuracy gates on. [default: synthetic cases]", exists=True,
        file_okay=False, show_default=False)] = None,
    calib_cases: Annotated[int, typer.Option(min=1, help="How many cases the gates run on.")] = 2,
    trt_opt_level: Annotated[int, typer.Option(min=0, max=5, help="TensorRT builder optimisation level.")] = 3,
) -> None:
    """Export a trained model to ONNX with its inference contract embedded.

    model.onnx takes image [N, 4, D, H, W] float32 (FLAIR, T1, T1ce, T2, z-scored inside the brain;
    N dynamic, D H W = the training patch) and returns probabilities [N, C, D, H, W] (sigmoid WT, TC,
    ET, or softmax over 4 classes). Its metadata holds the contract bratsx infer reads: modality
    order, normalisation, patch, orientation, channels, validation Dice. The export is refused when
    ONNX Runtime and PyTorch differ by more than 1e-4.
    """
    from ..export.pipeline import ExportOptions, export_model

    options = ExportOptions(fp16=fp16 or trt, trt=trt, opset=opset, max_batch=max_batch, calibration_dir=calib_dir,
                            calibration_cases=calib_cases, trt_optimization_level=trt_opt_level)
    with err_console.status("exporting") as status:
        report = export_model(source, out, options, on_step=lambda name: status.update(name))

    table = Table(title=f"exported {source}")
    table.add_column("file")
    table.add_column("check")
    agreement = report.agreement
    table.add_row(str(report.onnx), f"ORT vs PyTorch: max abs {agreement.max_abs:.2e}, "
                                    f"relative {agreement.max_rel:.2e} (limit 1e-4)")
    if report.fp16_onnx:
        table.add_row(str(report.fp16_onnx), report.fp16_gate.describe())
    if report.engine:
        table.add_row(str(report.engine),
                      f"{report.engine_gate.describe()}; built in {report.engine_build_seconds:.0f} s")
    console.print(table)
