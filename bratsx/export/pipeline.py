"""``bratsx export`` as one function: checkpoint -> verified fp32 ONNX -> gated fp16 ONNX -> gated engine.

Each artefact is written only after the previous one passed its check, and a failed check removes
what it was checking, so the output folder never holds a model that did not pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import BratsxError
from ..runtime.backends import OrtBackend
from .fp16 import GateResult, accuracy_gate, calibration_images, fp16_from_onnx
from .onnx_export import DEFAULT_OPSET, model_from_checkpoint, onnx_from_checkpoint
from .verify import FP32_TOLERANCE, Agreement, check_graph, compare_with_torch, verification_inputs

__all__ = ["ExportOptions", "ExportReport", "export_model"]


@dataclass(frozen=True)
class ExportOptions:
    """What ``bratsx export`` should write.

    Attributes:
        fp16: also write ``model.fp16.onnx`` (gated on accuracy).
        trt: also build ``model.engine`` from the fp16 ONNX (gated on accuracy); implies ``fp16``.
        opset: ONNX opset.
        max_batch: largest batch of tiles the graph and the engine accept.
        calibration_dir: cases to gate on (default: synthetic cases).
        calibration_cases: how many cases to gate on.
        trt_optimization_level: TensorRT builder optimisation level (0-5).
    """

    fp16: bool = False
    trt: bool = False
    opset: int = DEFAULT_OPSET
    max_batch: int = 8
    calibration_dir: Path | None = None
    calibration_cases: int = 2
    trt_optimization_level: int = 3


@dataclass(frozen=True)
class ExportReport:
    """What was written and what each check measured."""

    onnx: Path
    agreement: Agreement
    fp16_onnx: Path | None = None
    fp16_gate: GateResult | None = None
    engine: Path | None = None
    engine_gate: GateResult | None = None
    engine_build_seconds: float | None = None


def _refuse(path: Path, gate: GateResult, what: str) -> BratsxError:
    path.unlink(missing_ok=True)
    return BratsxError(
        f"{what} refused: {gate.describe()}. The reduced-precision model disagrees with fp32; use the fp32 model, "
        "or check the calibration cases (--calib-dir)"
    )


def export_model(
    source: Path, out_dir: Path, options: ExportOptions | None = None, on_step: Callable[[str], None] | None = None
) -> ExportReport:
    """Export a checkpoint (or run directory) into ``out_dir``.

    Args:
        source: a bratsx checkpoint file, or a run directory (its best checkpoint is used).
        out_dir: the output folder (created if needed).
        options: what to write.
        on_step: told the name of each step as it starts (for progress display).

    Returns:
        Paths and measurements.

    Raises:
        BratsxError: not a bratsx checkpoint, a failed verification or gate, TensorRT or GPU missing.
    """
    options = options or ExportOptions()
    step = on_step or (lambda name: None)
    step("loading the checkpoint")
    trained = model_from_checkpoint(source)
    out_dir.mkdir(parents=True, exist_ok=True)

    step("exporting to ONNX")
    onnx_path = onnx_from_checkpoint(trained, out_dir / "model.onnx", options.opset, options.max_batch)
    step("checking the graph and comparing ONNX Runtime with PyTorch")
    check_graph(onnx_path)
    reference = OrtBackend(onnx_path)
    agreement = compare_with_torch(reference.run, trained, verification_inputs(trained))
    if agreement.max_rel > FP32_TOLERANCE:
        onnx_path.unlink(missing_ok=True)
        raise BratsxError(
            f"export refused: ONNX Runtime differs from PyTorch by {agreement.max_rel:.2e} (relative), "
            f"more than {FP32_TOLERANCE:.0e}"
        )
    report = ExportReport(onnx_path, agreement)
    if not (options.fp16 or options.trt):
        return report

    step("converting to fp16 (InstanceNorm and activation kept in fp32)")
    fp16_path = fp16_from_onnx(onnx_path, out_dir / "model.fp16.onnx")
    step("fp16 accuracy gate")
    images = calibration_images(trained.contract, options.calibration_dir, options.calibration_cases)
    fp16_gate = accuracy_gate(reference.run, OrtBackend(fp16_path).run, trained.contract, images)
    if not fp16_gate.passed:
        raise _refuse(fp16_path, fp16_gate, "fp16 export")
    report = ExportReport(onnx_path, agreement, fp16_path, fp16_gate)
    if not options.trt:
        return report

    from ..runtime.tensorrt_backend import TrtBackend
    from .tensorrt_build import engine_from_onnx

    step("building the TensorRT engine")
    engine_path = out_dir / "model.engine"
    info = engine_from_onnx(fp16_path, engine_path, trained.contract, options.max_batch,
                            options.trt_optimization_level, timing_cache=out_dir / "timing.cache")
    step("TensorRT accuracy gate")
    engine = TrtBackend(engine_path)
    try:
        engine_gate = accuracy_gate(reference.run, engine.run, trained.contract, images)
    finally:
        engine.close()
    if not engine_gate.passed:
        raise _refuse(engine_path, engine_gate, "TensorRT engine")
    return ExportReport(onnx_path, agreement, fp16_path, fp16_gate, engine_path, engine_gate, info.build_seconds)
