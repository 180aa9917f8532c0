"""``bratsx train``: nnU-Net-style training on a directory of labelled BraTS cases."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..cases import Layout
from ..errors import BratsxError
from ..labels import OutputMode
from ..trainer.config import TrainConfig
from .common import console, err_console, reports_errors
from .options import LabelsOption, WorkspaceOption, shown_default, xyz_to_canonical
from .render import TrainingDisplay, training_progress

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``"90"``, ``"90s"``, ``"20m"``, ``"2h"`` or ``"1.5d"`` as seconds."""
    match = _DURATION.match(text)
    if not match:
        raise BratsxError(f"--max-time {text!r}: give a number with an optional unit s, m, h or d (e.g. 20m)")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def parse_features(text: str) -> tuple[int, ...]:
    """``"32,64,128,256"`` or ``"32 64 128 256"`` as a tuple of ints."""
    try:
        values = tuple(int(v) for v in re.split(r"[,\s]+", text.strip()) if v)
    except ValueError:
        raise BratsxError(f"--features {text!r}: give channel counts such as 32,64,128,256") from None
    if len(values) < 2:
        raise BratsxError(f"--features {text!r}: a U-Net needs at least two stages")
    return values


def _help(name: str, text: str) -> dict:
    """Help for an option whose default lives in TrainConfig (``None`` on the command line means "the
    default for a new run, or the saved value on --resume")."""
    return {"help": f"{text} [default: {shown_default(TrainConfig, name)}]", "show_default": False}


@reports_errors
def train(
    data_dir: Annotated[Path, typer.Argument(help="Directory of labelled cases (any BraTS layout).", exists=True,
                                             file_okay=False)],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Run directory for checkpoints, logs and curves. [default: WORKSPACE/runs/NAME; with "
                            "--resume, the workspace's latest run]", show_default=False)] = None,
    name: Annotated[Optional[str], typer.Option(
        help="Run name in the workspace. [default: the date and time]", show_default=False)] = None,
    epochs: Annotated[Optional[int], typer.Option(**_help("epochs", "Epochs."))] = None,
    iterations: Annotated[Optional[int], typer.Option(**_help("iterations", "Optimizer steps per epoch."))] = None,
    patch: Annotated[Optional[tuple[int, int, int]], typer.Option(
        **_help("patch", "Patch size X Y Z in voxels; also the exported model's tile."))] = None,
    features: Annotated[Optional[str], typer.Option(**_help("features", "Channels per U-Net stage."))] = None,
    output_mode: Annotated[Optional[OutputMode], typer.Option(
        case_sensitive=False, **_help("output_mode", "regions: sigmoid WT/TC/ET; labels: 4-class softmax."))] = None,
    batch_size: Annotated[Optional[int], typer.Option(**_help("batch_size", "Patches per step."))] = None,
    foreground_fraction: Annotated[Optional[float], typer.Option(
        **_help("foreground_fraction", "Share of patches centred on tumour."))] = None,
    accumulate: Annotated[Optional[int], typer.Option(
        **_help("accumulate", "Micro-batches per optimizer step (gradient accumulation)."))] = None,
    lr: Annotated[Optional[float], typer.Option(**_help("lr", "Initial learning rate (SGD, Nesterov, poly decay)."))
                  ] = None,
    val_every: Annotated[Optional[int], typer.Option(
        **_help("val_every", "Validate every N epochs (and after the last)."))] = None,
    fold: Annotated[Optional[str], typer.Option(
        help="Validation fold: a number (of the 5-fold split, or of --folds); with --folds also 'all' (one after "
             "another, each resumed where it stopped). [default: 0]", show_default=False)] = None,
    folds: Annotated[Optional[int], typer.Option(
        min=2, help="Cross-validation: nnU-Net's seeded k-fold split, written once to OUT/splits.json and reused by "
                    "every fold; fold k trains in OUT/fold_k and segments its held-out cases into OUT/oof (see "
                    "bratsx cv summary, bratsx postprocess tune --predictions).", show_default=False)] = None,
    val_fraction: Annotated[Optional[float], typer.Option(
        help="Hold out this fraction of cases instead of a 5-fold split.", show_default=False)] = None,
    split: Annotated[Optional[Path], typer.Option(
        "--split", help="Fixed split: JSON {\"train\": [...], \"val\": [...]} (or a list of folds).",
        exists=True, dir_okay=False, show_default=False)] = None,
    patience: Annotated[Optional[int], typer.Option(
        help="Stop after N validations without improvement. [default: never]", show_default=False)] = None,
    max_time: Annotated[Optional[str], typer.Option(
        help="Stop after this long, e.g. 20m or 2h (the last checkpoint is saved). [default: no limit]",
        show_default=False)] = None,
    gpus: Annotated[Optional[int], typer.Option(
        help="GPUs to use: 0 = CPU, 2+ = DataParallel (use torchrun for DDP). [default: 1 if CUDA is visible]",
        show_default=False)] = None,
    amp: Annotated[Optional[bool], typer.Option(
        "--amp/--no-amp", help="Mixed precision: fp16 + GradScaler on CUDA, bf16 on CPU. [default: on for CUDA]",
        show_default=False)] = None,
    workers: Annotated[Optional[int], typer.Option(**_help("workers", "Data-loader processes."))] = None,
    spatial_augmentation: Annotated[Optional[bool], typer.Option(
        "--rotate/--no-rotate", help="Random rotation and zoom (costly on CPU). [default: off]",
        show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(**_help("seed", "Seed of init, sampling and augmentation."))] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(
        help="Preprocessed-case cache, reused across runs. [default: ~/.cache/bratsx/preprocessed]", file_okay=False,
        show_default=False)] = None,
    layout: Annotated[Optional[Layout], typer.Option(case_sensitive=False, help="Force the case layout.",
                                                     show_default=False)] = None,
    labels: LabelsOption = None,
    init: Annotated[Optional[Path], typer.Option(
        "--init", help="Start from these weights instead of a seeded initialisation: a model folder (e.g. "
                       "bratsx/models/brats2018-cpu), an exported model.onnx or a checkpoint of the same network "
                       "(--features, --output-mode); the optimizer and schedule start fresh (fine-tuning).",
        exists=True, show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue OUT from checkpoints/last.pt, exactly.")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Train an nnU-Net-style 3D U-Net on the labelled cases in DATA_DIR.

    Cases are preprocessed once into a memory-mapped cache; each epoch runs ITERATIONS SGD steps on
    patches (a third centred on tumour), validates every VAL_EVERY epochs with full-volume
    sliding-window prediction, and keeps checkpoints/best.pt (best mean Dice) and last.pt. The run
    goes to WORKSPACE/runs/NAME and becomes the workspace's latest run, which `bratsx export` takes
    by default. Ctrl-C saves last.pt and tells how to resume. Under torchrun every process trains (DDP).
    """
    from ..trainer.config import AugmentConfig
    from ..workspace import Workspace

    space = Workspace.locate(workspace)
    explicit: dict[str, Any] = {
        "epochs": epochs, "iterations": iterations, "patch": xyz_to_canonical(patch) if patch else None,
        "features": parse_features(features) if features else None, "output_mode": output_mode,
        "batch_size": batch_size, "foreground_fraction": foreground_fraction, "accumulate": accumulate,
        "lr": lr, "val_every": val_every, "fold": None, "val_fraction": val_fraction, "split_file": split,
        "patience": patience, "max_time": parse_duration(max_time) if max_time else None, "gpus": gpus,
        "amp": amp, "workers": workers, "seed": seed, "cache_dir": cache_dir,
        "layout": layout.value if layout else None, "labels": labels.value if labels else None,
        "augment": AugmentConfig(spatial=0.2) if spatial_augmentation else None, "init": init,
    }
    if folds is not None:
        if split is not None or val_fraction is not None or resume:
            raise BratsxError("--folds makes and reuses its own split and resumes each fold itself; drop --split, "
                              "--val-fraction and --resume")
        named = space.runs_dir / name if name else None
        cv_dir = out or (named if named is not None and named.is_dir() else space.new_run_dir(name))
        _cross_validate(data_dir, cv_dir, folds, fold or "0", explicit, space)
        return
    if fold is not None and not fold.isdigit():
        raise BratsxError(f"--fold {fold!r}: give a fold number ('all' needs --folds)")
    explicit["fold"] = int(fold) if fold is not None else None
    if out is None:
        out = space.latest_run() if resume else space.new_run_dir(name)
    result = _train_one(TrainConfig.resolve(data_dir, out, resume, explicit), space)
    if result.stopped == "interrupted":
        err_console.print(
            f"[yellow]interrupted{f' by {result.signal_name}' if result.signal_name else ''} after step "
            f"{result.steps}; last.pt is saved. Resume with:[/]\n  "
            f"{escape(f'bratsx train {data_dir} --out {out} --resume')}"
        )
        raise typer.Exit(130)


def _train_one(config: TrainConfig, space) -> Any:
    """Train one run (under torchrun, this process's share), record it as the workspace's latest and show it."""
    from ..trainer.distributed import context_from_environment
    from ..trainer.loop import train as run_training

    distributed = context_from_environment()
    if distributed is None or distributed.rank == 0:
        space.set_latest_run(config.run_dir)
    with training_progress() as progress:
        result = run_training(config, on_event=TrainingDisplay(progress), distributed=distributed)
    table = Table(title=f"run {escape(str(result.run_dir))} ({result.stopped})", show_header=False)
    table.add_row("steps", f"{result.steps} ({result.epochs} epoch(s)) in {result.seconds / 60:.1f} min")
    if result.best_dice:
        table.add_row("best validation Dice", "  ".join(f"{k} {v:.3f}" for k, v in result.best_dice.items()))
        table.add_row("best checkpoint", escape(str(result.best_checkpoint)))
    table.add_row("last checkpoint", escape(str(result.last_checkpoint)))
    table.add_row("metrics / curves", escape(f"{result.run_dir / 'metrics.jsonl'}, "
                                             f"{result.run_dir / 'training_curves.png'}"))
    table.add_row("next", "bratsx export --fp16   (exports this run into the workspace's models/)")
    console.print(table)
    return result


def _cross_validate(data_dir: Path, cv_dir: Path, folds: int, fold: str, explicit: dict[str, Any], space) -> None:
    """Train the chosen folds of the cross-validation in ``cv_dir`` one after another (a fold with a last.pt
    resumes), each followed by its out-of-fold predictions; then the summary so far."""
    from ..cases import discover
    from ..crossval import SPLITS_FILE, cv_folds, cv_summary, fold_run_dir, fold_selection, predict_out_of_fold
    from .cv import render_summary

    chosen = fold_selection(fold, folds)
    cases = [c for c in discover(data_dir, explicit["layout"]).cases if c.label is not None]
    cv_folds(cv_dir, [c.case_id for c in cases], folds)
    for k in chosen:
        run_dir = fold_run_dir(cv_dir, k)
        resume = (run_dir / "checkpoints" / "last.pt").is_file()
        given = {**explicit, "split_file": cv_dir / SPLITS_FILE, "fold": k, "folds": folds}
        console.print(f"fold {k} of {folds}: {escape(str(run_dir))}{' (resumed)' if resume else ''}")
        result = _train_one(TrainConfig.resolve(data_dir, run_dir, resume, given), space)
        if result.stopped == "interrupted":
            err_console.print(f"[yellow]interrupted in fold {k}; rerun the same command to go on where it stopped[/]")
            raise typer.Exit(130)
        predict_out_of_fold(cv_dir, k, cases)
    render_summary(cv_summary(cv_dir), cv_dir)
