"""Every option of a training run, resolved, with nnU-Net's defaults."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import BratsxError
from ..labels import OutputMode

__all__ = ["RESUMABLE_OVERRIDES", "AugmentConfig", "TrainConfig", "auto_gpus"]


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run, with their probability per sample.

    Attributes:
        flip: probability of mirroring, per sample and axis.
        scale_intensity: probability of multiplying a channel by U(0.75, 1.25).
        shift_intensity: probability of adding N(0, 0.1) to a channel.
        gamma: probability of a gamma curve with gamma in U(0.7, 1.5) on a channel.
        noise: probability of adding Gaussian noise with sigma in U(0, 0.1).
        spatial: probability of a random rotation (up to 15 degrees per axis) and zoom (0.85-1.25);
            0 turns it off (the default: it costs a resampling of every patch).
    """

    flip: float = 0.5
    scale_intensity: float = 0.15
    shift_intensity: float = 0.15
    gamma: float = 0.3
    noise: float = 0.1
    spatial: float = 0.0


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """A training run.

    Attributes:
        data_dir: directory of labelled cases (any layout).
        run_dir: where checkpoints, logs and curves go.
        epochs: number of epochs.
        iterations: optimizer steps per epoch.
        patch: training patch (canonical axes); also the exported model's tile size.
        features: channels per U-Net stage.
        output_mode: ``regions`` or ``labels``.
        batch_size: patches per step and process.
        foreground_fraction: share of patches centred on tumour.
        lr, momentum, weight_decay, poly_exponent, grad_clip: SGD with Nesterov and poly decay.
        accumulate: micro-batches per optimizer step.
        amp: mixed precision (fp16 + GradScaler on CUDA, bf16 on CPU); ``None`` = on for CUDA only.
        gpus: GPUs to use (0 = CPU); more than one uses DataParallel unless run under torchrun.
        workers: data-loader processes.
        val_every: validate every this many epochs (and after the last).
        val_overlap: sliding-window overlap of validation.
        fold, folds: which fold of a k-fold split validates.
        val_fraction: hold out this fraction instead of k folds.
        split_file: a fixed split (JSON) instead of either.
        patience: stop after this many validations without improvement (``None``: never).
        max_time: stop after this many seconds of training (``None``: no budget).
        seed: seeds the network init, patch sampling and augmentation.
        cache_dir: preprocessed-case cache (shared between runs).
        layout: force a case layout instead of detecting it.
        labels: the label set of the training labels (``--labels``); ``None``: each case's layout, id or
            values say (an ambiguous map stops the run in one line). Recorded in the model's contract.
        augment: augmentation probabilities.
        init: start a new run from these weights (a model folder, an exported ONNX file or a checkpoint;
            ``--init``), with a fresh optimizer and schedule; ``None``: the seeded initialisation.
        resume: continue ``run_dir/checkpoints/last.pt``.
    """

    data_dir: Path
    run_dir: Path
    epochs: int = 1000
    iterations: int = 250
    patch: tuple[int, int, int] = (128, 128, 128)
    features: tuple[int, ...] = (32, 64, 128, 256)
    output_mode: OutputMode = OutputMode.REGIONS
    batch_size: int = 2
    foreground_fraction: float = 0.33
    lr: float = 1e-2
    momentum: float = 0.99
    weight_decay: float = 3e-5
    poly_exponent: float = 0.9
    grad_clip: float = 12.0
    accumulate: int = 1
    amp: bool | None = None
    gpus: int = 0
    workers: int = 2
    val_every: int = 10
    val_overlap: float = 0.5
    fold: int = 0
    folds: int = 5
    val_fraction: float | None = None
    split_file: Path | None = None
    patience: int | None = None
    max_time: float | None = None
    seed: int = 0
    cache_dir: Path | None = None
    layout: str | None = None
    labels: str | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    init: Path | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        for name in ("data_dir", "run_dir", "split_file", "cache_dir", "init"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "patch", tuple(int(p) for p in self.patch))
        object.__setattr__(self, "features", tuple(int(f) for f in self.features))
        object.__setattr__(self, "output_mode", OutputMode(self.output_mode))
        if isinstance(self.augment, dict):
            object.__setattr__(self, "augment", AugmentConfig(**self.augment))
        self._check()

    def _check(self) -> None:
        positive = {"epochs": self.epochs, "iterations": self.iterations, "batch_size": self.batch_size,
                    "accumulate": self.accumulate, "val_every": self.val_every, "folds": self.folds}
        for name, value in positive.items():
            if value < 1:
                raise BratsxError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if len(self.patch) != 3:
            raise BratsxError(f"--patch takes three sizes, got {self.patch}")
        divisor = 2 ** (len(self.features) - 1)
        if any(p % divisor for p in self.patch):
            raise BratsxError(
                f"--patch {' '.join(map(str, self.patch))}: every size must be a multiple of {divisor} "
                f"for a network of {len(self.features)} stages"
            )
        if not 0.0 <= self.foreground_fraction <= 1.0:
            raise BratsxError(f"--foreground-fraction must be within [0, 1], got {self.foreground_fraction}")
        if not 0 <= self.fold < self.folds:
            raise BratsxError(f"--fold must be within 0..{self.folds - 1}, got {self.fold}")
        if self.gpus < 0 or self.workers < 0:
            raise BratsxError("--gpus and --workers cannot be negative")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.iterations

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (written to ``config.json`` and into checkpoints)."""
        values = asdict(self)
        for name, value in values.items():
            if isinstance(value, Path):
                values[name] = str(value)
            elif isinstance(value, tuple):
                values[name] = list(value)
        values["output_mode"] = self.output_mode.value
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def resolve(cls, data_dir: Path, run_dir: Path, resume: bool, given: dict[str, Any]) -> TrainConfig:
        """The run's configuration: the options given (``None`` = default; for ``gpus``, :func:`auto_gpus`) for a
        new run; on ``resume`` the
        saved ``config.json``, overridden by the options given now (the training loop refuses those a
        resumed run cannot change, :data:`RESUMABLE_OVERRIDES`).

        Raises:
            BratsxError: no saved configuration to resume.
        """
        given = {k: v for k, v in given.items() if v is not None}
        if not resume:
            return cls(data_dir=data_dir, run_dir=run_dir, **{"gpus": auto_gpus(), **given})
        saved_path = Path(run_dir) / "config.json"
        if not saved_path.is_file():
            raise BratsxError(f"--resume: {saved_path} not found; is {run_dir} a bratsx run directory?")
        saved = cls.from_dict(json.loads(saved_path.read_text()))
        return replace(saved, data_dir=Path(data_dir), run_dir=Path(run_dir), resume=True, **given)


def auto_gpus() -> int:
    """GPUs a new run trains on unless told: one when PyTorch sees a CUDA GPU, else none (the CPU)."""
    from ..devices import torch_device

    return 1 if torch_device() == "cuda" else 0


#: Options a resumed run may change; the others must stay as the run was started.
RESUMABLE_OVERRIDES = frozenset(
    {"data_dir", "run_dir", "cache_dir", "epochs", "max_time", "patience", "workers", "val_every", "resume", "gpus"}
)
