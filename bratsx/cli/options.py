"""Option plumbing every command shares: defaults read from the library's option dataclasses (each default
is written once, in the dataclass), the workspace option, and the one axis order for spatial sizes."""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..export.options import ExportOptions, Int8Method
from ..labels import LabelConvention

__all__ = ["MODEL_LABELS", "CalibCasesOption", "CalibDirOption", "Fp16Option", "Int8Option", "LabelsOption",
           "MaxBatchOption", "OpsetOption", "OutputLabels", "OutputLabelsOption", "TrtOptLevelOption", "TrtOption",
           "WorkspaceOption", "default_of", "export_options", "shown_default", "xyz_to_canonical"]

WorkspaceOption = Annotated[Optional[Path], typer.Option(
    "--workspace", "-w", help="Workspace folder for runs/ and models/. [default: $BRATSX_HOME, else the current "
                              "folder]", file_okay=False, show_default=False)]

#: ``--labels NAME`` (``--convention`` is its older name): the label set in use, one of the README's table.
LabelsOption = Annotated[Optional[LabelConvention], typer.Option(
    "--labels", "--convention", case_sensitive=False,
    help="Label set: brats2020 (2018-2021), brats2023 (glioma), brats2024 (post-treatment glioma, RC 4), "
         "brats-men, brats-met, brats-ped2023, brats-ped2024, msd. [default: stated by the layout, case id or "
         "dataset.json, else read from the values where they are unambiguous]", show_default=False)]


#: ``--labels model``: an imported model's own label values (its ``dataset.json``), for outputs only.
MODEL_LABELS = "model"
#: The label sets and ``model``, as ``infer --labels`` takes them (derived from :class:`LabelConvention`).
OutputLabels = Enum("OutputLabels", {**{c.name: c.value for c in LabelConvention}, "MODEL": MODEL_LABELS}, type=str)

OutputLabelsOption = Annotated[Optional[OutputLabels], typer.Option(
    "--labels", "--convention", case_sensitive=False,
    help="Label set of the outputs and references: brats2020 (2018-2021), brats2023 (glioma), brats2024 "
         "(post-treatment glioma, RC 4), brats-men, brats-met, brats-ped2023, brats-ped2024, msd; or model: an "
         "imported model's own labels (its dataset.json values) in the outputs, references read by their values. "
         "[default: stated by the layout, case id or dataset.json, else read from the values where they are "
         "unambiguous]", show_default=False)]


def default_of(options: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``options``."""
    for item in dataclasses.fields(options):
        if item.name == name:
            if item.default is not dataclasses.MISSING:
                return item.default
            if item.default_factory is not dataclasses.MISSING:
                return item.default_factory()
    raise KeyError(f"{options.__name__} has no field {name!r} with a default")


# What bratsx export and bratsx import write beside model.onnx: one definition of each option for both commands.
Fp16Option = Annotated[bool, typer.Option("--fp16", help="Also write model.fp16.onnx, refused unless its WT/TC/ET Dice "
                                                         "against fp32 is >= 0.999.")]
TrtOption = Annotated[bool, typer.Option("--trt", help="Also build an FP16 TensorRT engine (needs TensorRT and an "
                                                       "NVIDIA GPU; implies --fp16), gated the same way.")]
Int8Option = Annotated[bool, typer.Option("--int8", help="Also write model.int8.xml/.bin, an OpenVINO IR quantized to "
                                                         "int8 by NNCF on calibration cases' tiles (the openvino-int8 "
                                                         "backend), shipped only if its WT/TC/ET Dice against fp32 is "
                                                         ">= 0.99 on held-out cases (the model's validation cases, or "
                                                         "--int8-gate-dir); otherwise left out, saying why.")]
Int8GateDirOption = Annotated[Optional[Path], typer.Option(
    "--int8-gate-dir", help="Held-out cases the int8 gate runs on (none may be a calibration case). [default: "
                            "the validation cases of the model's split in --calib-dir; synthetic without it]",
    exists=True, file_okay=False, show_default=False)]
Int8MethodOption = Annotated[Int8Method, typer.Option(
    case_sensitive=False, help="ptq: NNCF post-training quantization; accuracy-control: NNCF's "
                               "quantize_with_accuracy_control, reverting the convolutions that cost most Dice "
                               "against fp32 on the calibration cases.")]
Int8KeepEndsOption = Annotated[bool, typer.Option(help="Keep the first convolution and the output head in f32.")]
OpsetOption = Annotated[int, typer.Option(help="ONNX opset.")]
MaxBatchOption = Annotated[int, typer.Option(min=1, help="Largest batch of tiles the model accepts.")]
CalibDirOption = Annotated[Optional[Path], typer.Option(
    "--calib-dir", help="Cases to run the fp16/engine gates on and to calibrate int8 on (with the model's split: "
                        "its training cases there). [default: synthetic cases]", exists=True,
    file_okay=False, show_default=False)]
CalibCasesOption = Annotated[int, typer.Option(min=1, help="How many cases (of --calib-dir) the fp16/engine gates run "
                                                          "on and int8 calibrates on.")]
TrtOptLevelOption = Annotated[int, typer.Option(min=0, max=5, help="TensorRT builder optimisation level.")]


def export_options(*, fp16: bool, trt: bool, int8: bool, opset: int, max_batch: int, calib_dir: Optional[Path],
                   calib_cases: int, trt_opt_level: int, int8_gate_dir: Optional[Path] = None,
                   int8_method: Int8Method = Int8Method.PTQ,
                   int8_keep_ends: bool = default_of(ExportOptions, "int8_keep_ends")) -> ExportOptions:
    """The export options those command-line options give (``--trt`` implies ``--fp16``: the engine is built from
    the gated fp16 ONNX)."""
    return ExportOptions(fp16=fp16 or trt, trt=trt, int8=int8, opset=opset, max_batch=max_batch,
                         calibration_dir=calib_dir, calibration_cases=calib_cases, int8_gate_dir=int8_gate_dir,
                         int8_method=int8_method.value, int8_keep_ends=int8_keep_ends,
                         trt_optimization_level=trt_opt_level)


def shown_default(options: type, name: str) -> str:
    """How ``--help`` shows that default (sizes in X Y Z order, sequences comma-separated)."""
    value = default_of(options, name)
    if value is None:
        return "none"
    if isinstance(value, tuple) and name in ("patch", "shape"):
        return " ".join(str(v) for v in reversed(value))
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(getattr(value, "value", value))


def xyz_to_canonical(size: tuple[int, int, int]) -> tuple[int, int, int]:
    """A size given on the command line (X Y Z, as image viewers and NIfTI headers list it) in bratsx's
    canonical array order (Z Y X)."""
    return tuple(int(v) for v in reversed(size))
