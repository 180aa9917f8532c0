"""``bratsx import``: models trained elsewhere into ordinary bratsx model folders (``import nnunet RESULTS_DIR``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..errors import BratsxError
from ..export.options import ExportOptions
from ..importers.options import DEFAULT_CHECKPOINT, NnunetImport
from .common import console, err_console, reports_errors
from .options import WorkspaceOption
from .render import render_export

app = typer.Typer(help="Import a model trained elsewhere into a bratsx model folder.", no_args_is_help=True)


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
    channels: Annotated[Optional[str], typer.Option(
        help="Map input channels to modalities, e.g. '0=t1,1=t1ce,2=t2,3=flair'. [default: from dataset.json's "
             "channel_names]", show_default=False)] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Also write model.fp16.onnx, gated as bratsx export "
                                                      "--fp16.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Also write the int8 OpenVINO IR, gated as bratsx export "
                                                      "--int8.")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Import an nnU-Net v2 trained configuration: every fold built with nnU-Net's own network code, its weights
    loaded with torch.load(weights_only=True), the folds averaged in one ONNX model verified against PyTorch, and
    nnU-Net's preprocessing (crop, normalisation, resampling, transposition) and labels in its contract, so that
    bratsx infer, bench and serve segment as nnUNetPredictor does. The folder becomes the workspace's default model.
    """
    from ..importers.channels import parse_channel_option
    from ..importers.nnunet import import_nnunet
    from ..workspace import Workspace

    options = NnunetImport(folds=_folds(folds), checkpoint=checkpoint,
                           channels=parse_channel_option(channels) if channels else None,
                           export=ExportOptions(fp16=fp16, int8=int8))
    space = Workspace.locate(workspace)
    out = space.model_dir(name or _default_name(results))
    with err_console.status("importing") as status:
        report = import_nnunet(results, out, options, on_step=lambda step: status.update(step))
    space.set_default_model(out)
    render_export(f"imported {escape(str(results))} -> {escape(str(out))}", report)
    console.print(f"default model of workspace {escape(str(space.root))}: {escape(str(out))}")
