"""``bratsx import``: models trained elsewhere into ordinary bratsx model folders (``import nnunet RESULTS_DIR``,
``import monai-bundle BUNDLE_DIR``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape

from ..errors import BratsxError
from ..export.options import ExportOptions, Int8Method
from ..importers.options import DEFAULT_CHECKPOINT, MonaiBundleImport, NnunetImport
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

if TYPE_CHECKING:  # the importers import torch; the CLI imports them only when a command runs
    from ..export.pipeline import ExportReport


app = typer.Typer(help="Import a model trained elsewhere into a bratsx model folder.", no_args_is_help=True)


#: ``--channels`` of both importers.
ChannelsOption = Annotated[Optional[str], typer.Option(
    help="Name each input channel's image, e.g. '0=t1,1=t1ce,2=t2,3=flair'; a name that is no BraTS modality (3=adc) "
         "is read from each case's file of that name (<id>_adc.nii.gz, <id>-adc.nii.gz or adc.nii.gz). [default: "
         "the model's own channel names: dataset.json's channel_names, the bundle's channel_def]",
    show_default=False)]


def _folds(text: str) -> tuple[int, ...] | None:
    """``"0,1"`` as ``(0, 1)``; ``"all"`` as ``None`` (every fold present)."""
    if text.strip().lower() == "all":
        return None
    if not re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*", text):
        raise BratsxError(f"--folds: {text!r} is not a comma-separated list of fold numbers or 'all'")
    return tuple(dict.fromkeys(int(f) for f in text.split(",")))


def _default_name(results: Path) -> str:
    """``Dataset137_BraTS2021-3d_fullres`` for ``.../Dataset137_BraTS2021/nnUNetTrainer__nnUNetPlans__3d_fullres``."""
    results = results.resolve()
    return f"{results.parent.name}-{results.name.split('__')[-1]}"


def _import_into_workspace(source: Path, name: str, workspace: Optional[Path],
                           run: Callable[[Path, Callable[[str], None]], ExportReport]) -> None:
    """Run an importer into ``WORKSPACE/models/<name>`` with progress, make it the default model, render the report."""
    from ..workspace import Workspace

    space = Workspace.locate(workspace)
    out = space.model_dir(name)
    with err_console.status("importing") as status:
        report = run(out, lambda step: status.update(step))
    space.set_default_model(out)
    render_export(f"imported {escape(str(source))} -> {escape(str(out))}", report)
    console.print(f"default model of workspace {escape(str(space.root))}: {escape(str(out))}")


@app.command("nnunet")
@reports_errors
def nnunet(
    results: Annotated[Path, typer.Argument(
        help="An nnU-Net v2 results folder: .../DatasetXXX_Name/Trainer__Plans__configuration (plans.json, "
             "dataset.json, fold_N/checkpoint_final.pth).", exists=True, file_okay=False, show_default=False)],
    folds: Annotated[str, typer.Option(help="Folds to import, averaged as nnU-Net does: '0,1' or 'all'.")] = "all",
    checkpoint: Annotated[str, typer.Option(help="Checkpoint file in each fold folder.")] = DEFAULT_CHECKPOINT,
    name: Annotated[Optional[str], typer.Option(
        help="Model folder name under WORKSPACE/models. [default: DATASET-CONFIGURATION]", show_default=False)] = None,
    channels: ChannelsOption = None,
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
    """Import an nnU-Net v2 trained configuration: every fold built with nnU-Net's own network code, its weights
    loaded with torch.load(weights_only=True), the folds averaged in one ONNX model verified against PyTorch (then
    --fp16, --int8 and --trt gated against it as bratsx export gates them, by the same code), and nnU-Net's
    preprocessing (crop, normalisation, resampling, transposition) and labels in its contract, so that bratsx infer,
    bench and serve segment as nnUNetPredictor does. The folder becomes the workspace's default model.
    """
    from ..importers.channels import parse_channel_option
    from ..importers.nnunet import import_nnunet

    options = NnunetImport(folds=_folds(folds), checkpoint=checkpoint,
                           channels=parse_channel_option(channels) if channels else None,
                           export=export_options(fp16=fp16, trt=trt, int8=int8, opset=opset, max_batch=max_batch,
                                                 calib_dir=calib_dir, calib_cases=calib_cases,
                                                 trt_opt_level=trt_opt_level, int8_gate_dir=int8_gate_dir,
                                                 int8_method=int8_method, int8_keep_ends=int8_keep_ends))
    _import_into_workspace(results, name or _default_name(results), workspace,
                           lambda out, on_step: import_nnunet(results, out, options, on_step=on_step))


@app.command("monai-bundle")
@reports_errors
def monai_bundle(
    bundle: Annotated[Path, typer.Argument(
        help="A MONAI bundle folder (configs/metadata.json, configs/inference.json or .yaml, models/model.pt).",
        exists=True, file_okay=False, show_default=False)],
    name: Annotated[Optional[str], typer.Option(
        help="Model folder name under WORKSPACE/models. [default: the bundle folder's name]", show_default=False)
                    ] = None,
    orientation: Annotated[Optional[str], typer.Option(
        help="Axis codes of the arrays the network was trained on, for a bundle without Orientationd (it feeds "
             "files as stored; BraTS files are LPS). [default: the bundle's Orientationd]", show_default=False)
                           ] = None,
    channels: ChannelsOption = None,
    fp16: Fp16Option = False,
    int8: Int8Option = False,
    calib_dir: CalibDirOption = None,
    calib_cases: CalibCasesOption = default_of(ExportOptions, "calibration_cases"),
    int8_gate_dir: Int8GateDirOption = None,
    int8_method: Int8MethodOption = Int8Method.PTQ,
    int8_keep_ends: Int8KeepEndsOption = default_of(ExportOptions, "int8_keep_ends"),
    workspace: WorkspaceOption = None,
) -> None:
    """Import a MONAI bundle: its network_def instantiated by monai.bundle.ConfigParser, its weights loaded with
    torch.load(weights_only=True), exported to ONNX and verified against PyTorch, and its preprocessing
    (orientation, spacing, NormalizeIntensityd), sliding window (roi_size, overlap, constant or Gaussian blending) and
    post-processing (sigmoid regions at 0.5, BraTS labels) in its contract, so that bratsx infer, bench and serve
    segment as the bundle does. A setting bratsx cannot reproduce is refused, named, and nothing is written. The
    folder becomes the workspace's default model.
    """
    from ..importers.channels import parse_channel_option
    from ..importers.monai_bundle import import_monai_bundle

    export = ExportOptions(fp16=fp16, int8=int8, calibration_dir=calib_dir, calibration_cases=calib_cases,
                           int8_gate_dir=int8_gate_dir, int8_method=int8_method.value, int8_keep_ends=int8_keep_ends)
    options = MonaiBundleImport(orientation=orientation, export=export,
                                channels=parse_channel_option(channels) if channels else None)
    _import_into_workspace(bundle, name or bundle.resolve().name, workspace,
                           lambda out, on_step: import_monai_bundle(bundle, out, options, on_step=on_step))
