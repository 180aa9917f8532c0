"""``bratsx train``: nnU-Net-style training on a directory of labelled BraTS cases."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..cases import Layout
from ..errors import BratsxError
from ..labels import OutputMode
from .common import console, err_console, reports_errors

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


def _resolve_config(data_dir: Path, out: Path, resume: bool, explicit: dict[str, Any]):
    """The run's configuration: saved options on --resume, overridden by the ones given now."""
    from ..trainer.config import TrainConfig

    given = {k: v for k, v in explicit.items() if v is not None}
    if not resume:
        return TrainConfig(data_dir=data_dir, run_dir=out, **given)
    saved_path = out / "config.json"
    if not saved_path.is_file():
        raise BratsxError(f"--resume: {saved_path} not found; is {out} a bratsx run directory?")
    import json

    saved = TrainConfig.from_dict(json.loads(saved_path.read_text()))
    return replace(saved, data_dir=data_dir, run_dir=out, resume=True, **given)


class _Display:
    """Renders training events with Rich: cache progress, a step bar, validation lines."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.cache_task = None
        self.train_task = None

    def __call__(self, event) -> None:
        from ..trainer.loop import CacheProgress, EpochDone, StepDone, TrainingStarted, ValidationDone

        if isinstance(event, CacheProgress):
            if self.cache_task is None:
                self.cache_task = self.progress.add_task("preprocessing cases", total=event.total, info="")
            self.progress.update(self.cache_task, completed=event.done,
                                 info=f"{event.case_id} ({'built' if event.built else 'cached'})")
        elif isinstance(event, TrainingStarted):
            console.print(
                f"training on {event.train_cases} case(s), validating on {event.val_cases}; "
                f"{event.device}, {event.precision}, {event.parallel}"
            )
            self.train_task = self.progress.add_task(
                "training", total=event.total_steps, completed=event.start_step, info=""
            )
        elif isinstance(event, StepDone):
            self.progress.update(
                self.train_task, completed=event.step,
                description=f"epoch {event.epoch}",
                info=f"loss {event.epoch_loss:.4f}  lr {event.lr:.2e}",
            )
        elif isinstance(event, ValidationDone):
            scores = "  ".join(f"{k} {v:.3f}" for k, v in event.dice.items() if k != "mean")
            marker = "  [green]best[/]" if event.best else ""
            self.progress.console.print(
                f"epoch {event.epoch}: validation Dice {scores}  mean {event.dice['mean']:.3f}{marker}")
        elif isinstance(event, EpochDone):
            record = event.record
            summary = (f"loss {record['train_loss']:.4f}  {record['it_per_s']:.2f} it/s  "
                       f"data wait {100 * record['data_wait_fraction']:.0f}%")
            self.progress.update(self.train_task, info=summary)
            if not self.progress.console.is_terminal:  # a log file: one line per epoch instead of a bar
                self.progress.console.print(f"epoch {record['epoch']}: {summary}")


@reports_errors
def train(
    data_dir: Annotated[Path, typer.Argument(help="Directory of labelled cases (any BraTS layout).", exists=True,
                                             file_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory for checkpoints, logs and curves.")],
    epochs: Annotated[Optional[int], typer.Option(help="Epochs. [default: 1000]", show_default=False)] = None,
    iterations: Annotated[Optional[int], typer.Option(help="Optimizer steps per epoch. [default: 250]",
                                                      show_default=False)] = None,
    patch: Annotated[Optional[tuple[int, int, int]], typer.Option(
        help="Patch size Z Y X (canonical axes); also the exported model's tile. [default: 128 128 128]",
        show_default=False)] = None,
    features: Annotated[Optional[str], typer.Option(
        help="Channels per U-Net stage, e.g. 32,64,128,256 (the default).", show_default=False)] = None,
    output_mode: Annotated[Optional[OutputMode], typer.Option(
        case_sensitive=False, help="regions: sigmoid WT/TC/ET (default); labels: 4-class softmax.",
        show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Patches per step. [default: 2]",
                                                      show_default=False)] = None,
    foreground_fraction: Annotated[Optional[float], typer.Option(
        help="Share of patches centred on tumour. [default: 0.33]", show_default=False)] = None,
    accumulate: Annotated[Optional[int], typer.Option(
        help="Micro-batches per optimizer step (gradient accumulation). [default: 1]", show_default=False)] = None,
    lr: Annotated[Optional[float], typer.Option(help="Initial learning rate (SGD, Nesterov, poly decay). "
                                                     "[default: 0.01]", show_default=False)] = None,
    val_every: Annotated[Optional[int], typer.Option(help="Validate every N epochs (and after the last). "
                                                          "[default: 10]", show_default=False)] = None,
    fold: Annotated[Optional[int], typer.Option(help="Validation fold of the 5-fold split. [default: 0]",
                                                show_default=False)] = None,
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
    workers: Annotated[Optional[int], typer.Option(help="Data-loader processes. [default: 2]",
                                                   show_default=False)] = None,
    spatial_augmentation: Annotated[Optional[bool], typer.Option(
        "--rotate/--no-rotate", help="Random rotation and zoom (costly on CPU). [default: off]",
        show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of init, sampling and augmentation. [default: 0]",
                                                show_default=False)] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(
        help="Preprocessed-case cache, reused across runs. [default: ~/.cache/bratsx/preprocessed]",
        file_okay=False, show_default=False)] = None,
    layout: Annotated[Optional[Layout], typer.Option(case_sensitive=False, help="Force the case layout.",
                                                     show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue OUT from checkpoints/last.pt, exactly.")] = False,
) -> None:
    """Train an nnU-Net-style 3D U-Net on the labelled cases in DATA_DIR.

    Cases are preprocessed once into a memory-mapped cache; each epoch runs ITERATIONS SGD steps on
    patches (a third centred on tumour), validates every VAL_EVERY epochs with full-volume
    sliding-window prediction, and keeps checkpoints/best.pt (best mean Dice) and last.pt. Ctrl-C
    saves last.pt and tells how to resume. Under torchrun every process trains (DDP).
    """
    import torch

    from ..trainer.augment import AugmentConfig
    from ..trainer.distributed import context_from_environment
    from ..trainer.loop import train as run_training

    explicit: dict[str, Any] = {
        "epochs": epochs, "iterations": iterations, "patch": patch,
        "features": parse_features(features) if features else None, "output_mode": output_mode,
        "batch_size": batch_size, "foreground_fraction": foreground_fraction, "accumulate": accumulate,
        "lr": lr, "val_every": val_every, "fold": fold, "val_fraction": val_fraction, "split_file": split,
        "patience": patience, "max_time": parse_duration(max_time) if max_time else None, "gpus": gpus,
        "amp": amp, "workers": workers, "seed": seed, "cache_dir": cache_dir,
        "layout": layout.value if layout else None,
        "augment": AugmentConfig(spatial=0.2) if spatial_augmentation else None,
    }
    if not resume and gpus is None:
        explicit["gpus"] = 1 if torch.cuda.is_available() else 0
    config = _resolve_config(data_dir, out, resume, explicit)

    columns = [TextColumn("[progress.description]{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err_console) as progress:
        result = run_training(config, on_event=_Display(progress), distributed=context_from_environment())

    table = Table(title=f"run {result.run_dir} ({result.stopped})", show_header=False)
    table.add_row("steps", f"{result.steps} ({result.epochs} epoch(s)) in {result.seconds / 60:.1f} min")
    if result.best_dice:
        table.add_row("best validation Dice", "  ".join(f"{k} {v:.3f}" for k, v in result.best_dice.items()))
        table.add_row("best checkpoint", str(result.best_checkpoint))
    table.add_row("last checkpoint", str(result.last_checkpoint))
    table.add_row("metrics / curves", f"{result.run_dir / 'metrics.jsonl'}, {result.run_dir / 'training_curves.png'}")
    console.print(table)
    if result.stopped == "interrupted":
        err_console.print(
            f"[yellow]interrupted{f' by {result.signal_name}' if result.signal_name else ''} after step "
            f"{result.steps}; last.pt is saved. Resume with:[/]\n  bratsx train {data_dir} --out {out} --resume"
        )
        raise typer.Exit(130)
