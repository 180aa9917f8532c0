"""``bratsx export`` as one function: checkpoint -> verified fp32 ONNX (ONNX Runtime and, where installed, OpenVINO
f32 against PyTorch) -> [gated int8 IR] -> gated fp16 ONNX -> gated engine.

Each artefact is written only after the previous one passed its check, and a failed check removes
what it was checking, so the output folder never holds a model that did not pass. A failed fp16 or
engine gate stops the export; a failed int8 gate (held-out cases, :mod:`bratsx.export.int8`) leaves the
int8 files out and the rest ships, the gate and its one-line reason recorded in ``model.json``.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..atomic import atomic_folder
from ..errors import BratsxError
from ..modelfolder import (
    MODEL_FILES,
    MODEL_JSON,
    ModelFolder,
    carry_postprocess,
    write_ensemble_json,
    write_model_json,
)
from ..network.checkpoint import TrainedModel, model_from_checkpoint
from ..runtime.backends import OrtBackend
from .fp16 import FP16_GATE_ARITHMETIC, GateResult, accuracy_gate, calibration_cases, fp16_from_onnx
from .onnx_export import onnx_from_checkpoint
from .options import ExportOptions
from .verify import FP32_TOLERANCE, Agreement, check_graph, compare_with_torch, verification_inputs

__all__ = ["ExportOptions", "ExportReport", "check_model_folder_target", "export_model", "export_trained"]


@dataclass(frozen=True)
class ExportReport:
    """What was written and what each check measured."""

    onnx: Path
    agreement: Agreement
    openvino_agreement: Agreement | None = None
    fp16_onnx: Path | None = None
    fp16_gate: GateResult | None = None
    engine: Path | None = None
    engine_gate: GateResult | None = None
    engine_build_seconds: float | None = None
    gates: dict = field(default_factory=dict)
    int8: Path | None = None
    int8_gate: GateResult | None = None
    int8_refusal: str | None = None

    def moved_to(self, folder: Path) -> ExportReport:
        """The same report with its paths in ``folder`` (where the staging folder was moved)."""
        def moved(path: Path | None) -> Path | None:
            return folder / path.name if path is not None else None

        return replace(self, onnx=moved(self.onnx), fp16_onnx=moved(self.fp16_onnx), engine=moved(self.engine),
                       int8=moved(self.int8))


def _refuse(path: Path, gate: GateResult, what: str) -> BratsxError:
    path.unlink(missing_ok=True)
    return BratsxError(
        f"{what} refused: {gate.describe()}. The reduced-precision model disagrees with fp32; export without it "
        "to keep the fp32 model, or check the calibration cases (--calib-dir)"
    )


def _gate_record(gate: GateResult, calibration: str, arithmetic: str) -> dict:
    return {"dice": gate.dice, "threshold": gate.threshold, "passed": gate.passed, "cases": gate.cases,
            "calibration": calibration, "arithmetic": arithmetic}


def check_model_folder_target(out_dir: Path) -> None:
    """Refuse an ``out_dir`` that exists and is not a model folder (an earlier model folder is replaced).

    Raises:
        BratsxError: a file, or a non-empty folder without ``model.json``.
    """
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MODEL_JSON).is_file())):
        raise BratsxError(f"{out_dir} exists and is not a model folder; export into a new or empty folder (an "
                          "earlier model folder is replaced)")


def export_model(
    source: Path, out_dir: Path, options: ExportOptions | None = None, on_step: Callable[[str], None] | None = None
) -> ExportReport:
    """Export a checkpoint (or run directory) into the model folder ``out_dir``.

    The folder is filled in a hidden staging folder and moved into place only once every check has
    passed, replacing an earlier folder of that name: ``out_dir`` never holds a model that did not
    pass, nor a mix of two exports.

    Args:
        source: a bratsx checkpoint file, or a run directory (its best checkpoint is used).
        out_dir: the model folder (see :mod:`bratsx.modelfolder`).
        options: what to write.
        on_step: told the name of each step as it starts (for progress display).

    Returns:
        Paths (in ``out_dir``) and measurements.

    Raises:
        BratsxError: not a bratsx checkpoint, a failed verification or gate, TensorRT or GPU missing.
    """
    options = options or ExportOptions()
    check_model_folder_target(out_dir)
    step = on_step or (lambda name: None)
    previous = ModelFolder.read(out_dir) if (out_dir / MODEL_JSON).is_file() else None
    tuned = previous.postprocess if previous is not None else None  # a re-export keeps the folder's tuned spec
    step("loading the checkpoint")
    trained = model_from_checkpoint(source)
    if tuned is not None:  # embedded in the ONNX contract too, so a model file taken out of the folder has it
        trained = replace(trained, contract=replace(trained.contract, postprocess=tuned.to_dict()))
    checkpoint = trained.checkpoint.resolve()
    source_info = {"checkpoint": str(checkpoint), "checkpoint_sha256": trained.contract.checkpoint_sha256,
                   "run": str(checkpoint.parent.parent)}
    return export_trained(trained, out_dir, source_info, options, step, previous)


def export_trained(trained: TrainedModel, out_dir: Path, source: dict, options: ExportOptions,
                   step: Callable[[str], None], previous: ModelFolder | None = None) -> ExportReport:
    """Export a network already in memory (bratsx's, or one imported by :mod:`bratsx.importers`) into the model
    folder ``out_dir``, atomically, with ``source`` recorded in its ``model.json`` and ``previous``'s tuned
    post-processing carried over; see :func:`export_model`."""
    check_model_folder_target(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(out_dir) as staging, tempfile.TemporaryDirectory(prefix="bratsx-calibration-") as scratch:
        report = _export_into(trained, staging, Path(scratch), options, step)
        step("describing the model folder")
        write_model_json(staging, out_dir.name, trained.contract, source, report.gates)
        if previous is not None:
            carry_postprocess(previous, staging)
    return report.moved_to(out_dir)


def _int8_into(trained: TrainedModel, out_dir: Path, scratch: Path, options: ExportOptions, reference: OrtBackend,
               report: ExportReport, step: Callable[[str], None]) -> ExportReport:
    """Quantize to int8 and gate it on held-out cases; a model whose int8 fails ships without the int8 file, its
    gate (with the one-line reason) recorded in ``model.json``."""
    from .int8 import int8_cases, int8_gated

    calibration, gate_cases, gate_source = int8_cases(
        trained.contract, scratch / "int8", options.calibration_dir, options.calibration_cases,
        options.int8_gate_dir, trained.split)
    step(f"quantizing to int8 (NNCF {options.int8_method}, calibrated on {len(calibration)} case(s)) and its gate on "
         f"{len(gate_cases)} held-out case(s)")
    int8_path = out_dir / MODEL_FILES["int8"]
    result = int8_gated(report.onnx, int8_path, reference, trained.contract, calibration, gate_cases, gate_source,
                        keep_ends=options.int8_keep_ends, method=options.int8_method)
    report.gates["int8"] = result.record(str(options.calibration_dir or "synthetic"))
    if not result.gate.passed:
        int8_path.unlink(missing_ok=True)
        int8_path.with_suffix(".bin").unlink(missing_ok=True)
        return replace(report, int8_gate=result.gate, int8_refusal=result.refusal())
    return replace(report, int8=int8_path, int8_gate=result.gate)


def _verified(runtime: str, agreement: Agreement) -> Agreement:
    """``agreement`` when within :data:`FP32_TOLERANCE` of PyTorch; otherwise the export is refused."""
    if agreement.max_rel > FP32_TOLERANCE:
        raise BratsxError(f"export refused: {runtime} differs from PyTorch by {agreement.max_rel:.2e} (relative), "
                          f"more than {FP32_TOLERANCE:.0e}")
    return agreement


def _openvino_agreement(onnx_path: Path, trained: TrainedModel, inputs: dict) -> Agreement | None:
    """OpenVINO f32 (the CPU default of ``bratsx infer``) against PyTorch on the same inputs, held to the same
    tolerance as ONNX Runtime; ``None`` where OpenVINO is not installed. A graph OpenVINO compiles into something
    less exact (its merged reductions undid the staged norms: 1.6e-3 relative in one variance) is caught here, at
    export, not in the segmentations."""
    if importlib.util.find_spec("openvino") is None:
        return None
    from ..runtime.backends import OpenVinoBackend

    with OpenVinoBackend(onnx_path) as backend:
        return _verified("OpenVINO f32", compare_with_torch(backend.run, trained, inputs))


def _export_into(trained: TrainedModel, out_dir: Path, scratch: Path, options: ExportOptions,
                 step: Callable[[str], None]) -> ExportReport:
    step("exporting to ONNX")
    onnx_path = onnx_from_checkpoint(trained, out_dir / MODEL_FILES["fp32"], options.opset, options.max_batch)
    step("checking the graph and comparing ONNX Runtime (and OpenVINO, when installed) with PyTorch")
    check_graph(onnx_path)
    reference = OrtBackend(onnx_path)
    inputs = verification_inputs(trained)
    agreement = _verified("ONNX Runtime", compare_with_torch(reference.run, trained, inputs))
    gates = {"fp32": {"max_abs": agreement.max_abs, "max_rel": agreement.max_rel, "tolerance": FP32_TOLERANCE,
                      "passed": True, "inputs": list(agreement.inputs)}}
    openvino = _openvino_agreement(onnx_path, trained, inputs)
    if openvino is not None:
        gates["fp32"]["openvino"] = {"max_abs": openvino.max_abs, "max_rel": openvino.max_rel}
    report = ExportReport(onnx_path, agreement, openvino, gates=gates)
    if options.int8:
        report = _int8_into(trained, out_dir, scratch, options, reference, report, step)
    if not (options.fp16 or options.trt):
        return report
    cases = calibration_cases(trained.contract, scratch, options.calibration_dir, options.calibration_cases)
    calibration = str(options.calibration_dir) if options.calibration_dir else "synthetic"

    step("converting to fp16 (InstanceNorm and activation kept in fp32)")
    fp16_path = fp16_from_onnx(onnx_path, out_dir / MODEL_FILES["fp16"])
    step("fp16 accuracy gate")
    fp16_gate = accuracy_gate(reference, OrtBackend(fp16_path), trained.contract, cases)
    gates["fp16"] = _gate_record(fp16_gate, calibration, FP16_GATE_ARITHMETIC)
    if not fp16_gate.passed:
        raise _refuse(fp16_path, fp16_gate, "fp16 export")
    report = replace(report, fp16_onnx=fp16_path, fp16_gate=fp16_gate)
    if not options.trt:
        return report

    from ..runtime.tensorrt_backend import TrtBackend
    from .tensorrt_build import engine_from_onnx

    step("building the TensorRT engine")
    engine_path = out_dir / MODEL_FILES["engine"]
    info = engine_from_onnx(fp16_path, engine_path, trained.contract, options.max_batch,
                            options.trt_optimization_level, timing_cache=out_dir.parent / "timing.cache")
    step("TensorRT accuracy gate")
    with TrtBackend(engine_path) as engine:
        engine_gate = accuracy_gate(reference, engine, trained.contract, cases)
    gates["engine"] = _gate_record(engine_gate, calibration, "TensorRT fp16 (strongly typed) on the GPU")
    if not engine_gate.passed:
        raise _refuse(engine_path, engine_gate, "TensorRT engine")
    return replace(report, engine=engine_path, engine_gate=engine_gate, engine_build_seconds=info.build_seconds)


def export_ensemble(
    sources: Sequence[Path], out_dir: Path, options: ExportOptions | None = None,
    on_step: Callable[[str], None] | None = None,
) -> list[ExportReport]:
    """Export several runs (the folds of a cross-validation) into one ensemble model folder: each into
    ``out_dir/fold_<k>`` by :func:`export_model` (verified and gated alone), described together by ``model.json``
    (``members``); runtimes average the members' logits. A tuned spec of the folder it replaces is kept.

    Returns:
        Each member's report, paths in its final folder.

    Raises:
        BratsxError: fewer than 2 sources, ``out_dir`` not a model folder, or as :func:`export_model`.
    """
    if len(sources) < 2:
        raise BratsxError(f"an ensemble needs at least 2 runs, got {len(sources)}")
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MODEL_JSON).is_file())):
        raise BratsxError(f"{out_dir} exists and is not a model folder; export into a new or empty folder (an "
                          "earlier model folder is replaced)")
    previous = ModelFolder.read(out_dir) if (out_dir / MODEL_JSON).is_file() else None
    step = on_step or (lambda name: None)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    members = [f"fold_{k}" for k in range(len(sources))]
    reports = []
    with atomic_folder(out_dir) as staging:
        for member, source in zip(members, sources):
            reports.append(export_model(source, staging / member, options,
                                        on_step=lambda name, member=member: step(f"{member}: {name}")))
        step("describing the ensemble")
        write_ensemble_json(staging, out_dir.name, members)
        if previous is not None:
            carry_postprocess(previous, staging)
    return [report.moved_to(out_dir / member) for report, member in zip(reports, members)]
