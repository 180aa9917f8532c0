"""The training loop: from a directory of labelled cases to ``best.pt``.

:func:`train` resolves the split, builds the preprocessed cache, then runs SGD steps on patches,
validating every few epochs with full-volume sliding-window prediction. It never prints: progress
goes to an ``on_event`` callback (the CLI draws it with Rich), files go to the run directory.

Exact resume: the model is initialised from the seed, every patch is a function of its global
index (:mod:`bratsx.trainer.data`), augmentation is seeded per step, and the learning rate is a
function of the step; ``last.pt`` stores the step, the optimizer and scaler states, the precision and
the partial epoch, so a resumed run computes the same losses as one that was never stopped (on the
same device: a run started on the CPU may be resumed on a GPU, where it trains in fp16 with a fresh
loss scale).

On CUDA, cuDNN picks the fastest convolution algorithm for the fixed patch size once
(``cudnn.benchmark``), for the duration of :func:`train`. Under ``torchrun`` every process builds its
share of the preprocessing cache and validates its share of the validation cases; ranks that finish
early wait on the host, for a time sized to the work (see :mod:`bratsx.trainer.distributed`).
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..cases import Case, discover
from ..contract import ModelContract
from ..errors import BratsxError
from ..labels import REGION_ORDER, LabelConvention
from ..network.checkpoint import load_checkpoint, save_checkpoint
from ..network.unet import NetworkConfig, UNet3D
from .augment import augment_batch
from .cache import CachedCase, build_cache, default_cache_dir, read_cache
from .config import RESUMABLE_OVERRIDES, TrainConfig
from .data import (
    IndexRange,
    PatchDataset,
    PatchSampler,
    Split,
    fraction_split,
    k_fold_splits,
    read_split_file,
    write_split_file,
)
from .distributed import DistributedContext
from .init_weights import initialise_from
from .logs import RunLog, write_json_atomic
from .loss import DeepSupervisionLoss, SegmentationLoss
from .validation import validate

__all__ = [
    "CacheProgress",
    "CasesPassedOver",
    "EpochDone",
    "StepDone",
    "TrainResult",
    "TrainingStarted",
    "ValidationDone",
    "train",
    "wrap_model",
]

logger = logging.getLogger(__name__)

#: A generous bound on preprocessing or validating one case on a slow node. Ranks wait for each other's
#: share of such work for this long per case of a share (only a hung rank ever reaches it).
SECONDS_PER_CASE = 600.0


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheProgress:
    """A case was preprocessed into the cache (``built``) or found there."""

    case_id: str
    built: bool
    done: int
    total: int


@dataclass(frozen=True)
class CasesPassedOver:
    """What discovery found but training does not use, one line each (unlabelled cases, skipped folders)."""

    lines: tuple[str, ...]


@dataclass(frozen=True)
class TrainingStarted:
    """Steps are about to run."""

    start_step: int
    total_steps: int
    iterations: int
    train_cases: int
    val_cases: int
    device: str
    precision: str
    parallel: str
    initialised: str = ""


@dataclass(frozen=True)
class StepDone:
    """One optimizer step finished."""

    step: int
    epoch: int
    loss: float
    epoch_loss: float
    lr: float


@dataclass(frozen=True)
class ValidationDone:
    """Validation Dice per region after ``epoch``; ``best`` when it improved the best checkpoint."""

    epoch: int
    dice: dict[str, float]
    best: bool


@dataclass(frozen=True)
class EpochDone:
    """The record appended to ``metrics.jsonl``."""

    record: dict[str, Any]


TrainEvent = CacheProgress | TrainingStarted | StepDone | ValidationDone | EpochDone


@dataclass(frozen=True)
class TrainResult:
    """How a run ended.

    Attributes:
        stopped: ``completed``, ``early-stopping``, ``time-budget`` or ``interrupted``.
        signal_name: the signal that interrupted the run, if one did.
    """

    run_dir: Path
    steps: int
    epochs: int
    stopped: str
    best_dice: dict[str, float] | None
    seconds: float
    signal_name: str | None = None

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "best.pt"


# --- setup ------------------------------------------------------------------------------------


@dataclass
class _History:
    """Progress that a checkpoint carries so a resumed run continues exactly."""

    step: int = 0
    epoch_losses: list[float] = field(default_factory=list)
    epoch_wait: float = 0.0
    epoch_seconds: float = 0.0
    best_mean: float = -1.0
    best_dice: dict[str, float] | None = None
    validations_since_best: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _select_device(config: TrainConfig, distributed: DistributedContext) -> torch.device:
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if distributed.enabled:
        if not available:
            return torch.device("cpu")
        if distributed.local_rank >= available:
            raise BratsxError(f"LOCAL_RANK {distributed.local_rank} has no GPU: {available} CUDA GPU(s) are visible; "
                              "start torchrun with --nproc_per_node at most the number of GPUs")
        return torch.device("cuda", distributed.local_rank)
    if config.gpus > available:
        raise BratsxError(f"--gpus {config.gpus} asked for, but {available} CUDA GPU(s) are visible")
    return torch.device("cuda", 0) if config.gpus >= 1 else torch.device("cpu")


def _precision(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: fp16 on CUDA, bf16 on CPU, ``None`` for full fp32."""
    use_amp = config.amp if config.amp is not None else device.type == "cuda"
    if not use_amp:
        return None
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def _precision_name(dtype: torch.dtype | None) -> str:
    return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32")


@contextmanager
def _cudnn_autotune(device: torch.device) -> Iterator[None]:
    """On CUDA, let cuDNN benchmark convolution algorithms once per input shape (patches have one size)."""
    if device.type != "cuda":
        yield
        return
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def _work_timeout(cases: int, world: int) -> timedelta:
    """How long ranks wait for each other's share of per-case work over ``cases``."""
    return timedelta(seconds=SECONDS_PER_CASE * max(1, math.ceil(cases / world)))


def _labelled_cases(config: TrainConfig) -> tuple[dict[str, Case], tuple[str, ...]]:
    """The labelled cases to train on, and a line for everything passed over (unlabelled cases, skipped folders)."""
    found = discover(config.data_dir, config.layout)
    if config.labels is not None:  # stated: every reference is read in it, never guessed from its values
        stated = LabelConvention(config.labels)
        found = replace(found, cases=tuple(replace(c, stated_labels=stated) for c in found.cases))
    broken = [c for c in found.cases if c.problems]
    if broken:
        raise broken[0].problems[0]
    labelled = {c.case_id: c for c in found.cases if c.label is not None}
    if len(labelled) < 2:
        raise BratsxError(f"{config.data_dir}: training needs at least 2 labelled cases, found {len(labelled)}")
    passed_over = tuple(f"case {c.case_id}: no label file, not used for training"
                        for c in found.cases if c.label is None)
    return labelled, passed_over + tuple(f"{s.path}: {s.reason}" for s in found.skipped)


def _label_set_of(config: TrainConfig, cases: dict[str, Case]) -> LabelConvention | None:
    """The label set the contract records: ``--labels``, else the one every training case's layout or id states."""
    if config.labels is not None:
        return LabelConvention(config.labels)
    stated = {case.convention for case in cases.values()}
    return stated.pop() if len(stated) == 1 else None


def _resolve_split(config: TrainConfig, case_ids: list[str], saved: dict | None) -> tuple[Split, list[Split]]:
    """The split to train on, and every fold to write to ``splits.json``."""
    if saved is not None:
        split = Split(tuple(saved["train"]), tuple(saved["val"]))
        return split, [split]
    if config.split_file is not None:
        split = read_split_file(config.split_file, config.fold)
        return split, [split]
    if config.val_fraction is not None:
        split = fraction_split(case_ids, config.val_fraction, config.seed)
        return split, [split]
    folds = k_fold_splits(case_ids, config.folds, config.seed)
    return folds[config.fold], folds


def _check_split(split: Split, cases: dict[str, Case]) -> None:
    unknown = [c for c in (*split.train, *split.val) if c not in cases]
    if unknown:
        raise BratsxError(f"the split names case(s) not found as labelled cases: {', '.join(unknown[:5])}")
    if not split.train or not split.val:
        raise BratsxError("the split needs at least one training and one validation case")


def _check_resume(config: TrainConfig, saved: dict[str, Any]) -> None:
    differing = [
        name for name, value in config.to_dict().items()
        if name not in RESUMABLE_OVERRIDES and saved.get(name) != value
    ]
    if differing:
        raise BratsxError(
            "--resume continues a run as it was configured; these options differ from the saved run: "
            + ", ".join(differing)
        )


def _ignore_sigint_in_worker(_: int) -> None:
    """Data-loader workers leave Ctrl-C to the main process, which stops cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def wrap_model(
    model: nn.Module, gpus: int, device: torch.device, distributed: DistributedContext
) -> tuple[nn.Module, str]:
    """DDP under torchrun, DataParallel for several GPUs in one process, else the model itself.

    Returns the module to call for training steps and a description of the parallelism. Weights
    are always saved from the unwrapped ``model``, so checkpoints carry no ``module.`` prefix.
    """
    if distributed.enabled:
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids), "DistributedDataParallel"
    if gpus > 1:
        return nn.DataParallel(model, device_ids=list(range(gpus))), f"DataParallel x{gpus}"
    return model, "single device"


def _median_spacing(cases: list[CachedCase]) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.median(np.array([c.spacing for c in cases]), axis=0))


def _poly_lr(config: TrainConfig, step: int) -> float:
    return config.lr * (1.0 - step / config.total_steps) ** config.poly_exponent


def _install_stop_handlers(stop: threading.Event, received: list[int]) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, _frame) -> None:
        received.append(signum)
        stop.set()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


# --- the loop ---------------------------------------------------------------------------------


class _Run:
    """One invocation of :func:`train`: the objects a step needs, and how to save them."""

    def __init__(self, config: TrainConfig, distributed: DistributedContext, on_event) -> None:
        self.config = config
        self.distributed = distributed
        self.emit = on_event if distributed.is_main else (lambda event: None)
        self.checkpoints = config.run_dir / "checkpoints"
        self.device = _select_device(config, distributed)
        self.autocast_dtype = _precision(config, self.device)
        self.precision = _precision_name(self.autocast_dtype)

    # setup ------------------------------------------------------------------------------------

    def prepare(self) -> None:
        config = self.config
        saved = self._saved_state()
        cases, passed_over = _labelled_cases(config)
        if passed_over:
            self.emit(CasesPassedOver(passed_over))
        split, folds = _resolve_split(config, sorted(cases), saved["split"] if saved else None)
        _check_split(split, cases)
        self.split = split
        if self.distributed.is_main:
            config.run_dir.mkdir(parents=True, exist_ok=True)
            if saved is None:  # a resumed run keeps the split file it started with
                write_split_file(config.run_dir / "splits.json", folds)
            write_json_atomic(config.run_dir / "config.json", config.to_dict())
        self.train_cases, self.val_cases = self._cache([cases[c] for c in split.train], [cases[c] for c in split.val])

        torch.manual_seed(config.seed)
        network = NetworkConfig(features=config.features, output_mode=config.output_mode)
        # oneDNN's preferred layout on CPUs: fp32 steps of the default U-Net ran ~1.5x faster in channels-last
        # than in the contiguous layout on the development CPU; GPUs keep PyTorch's default.
        self.memory_format = torch.channels_last_3d if self.device.type == "cpu" else torch.contiguous_format
        self.model = UNet3D(network).to(self.device, memory_format=self.memory_format)
        self.contract = ModelContract(config.patch, config.output_mode, network.to_dict(),
                                      spacing=_median_spacing(self.train_cases + self.val_cases),
                                      label_set=_label_set_of(config, cases))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=config.momentum,
                                         nesterov=True, weight_decay=config.weight_decay)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)
        self.history = _History()
        self.initialised = ""
        if saved is None and config.init is not None:
            self.initialised = initialise_from(config.init, self.model).describe()
        if saved is not None:
            self.model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self._restore_scaler(saved)
            self.history = _History(**saved["history"])
            if self.history.best_dice:
                self.contract = self.contract.with_validation_dice(self.history.best_dice)
        self.wrapped, self.parallel = wrap_model(self.model, config.gpus, self.device, self.distributed)
        heads = min(3, len(config.features) - 1)
        self.loss = DeepSupervisionLoss(SegmentationLoss(config.output_mode), heads)
        self.log = RunLog(config.run_dir) if self.distributed.is_main else None
        if self.log is not None and saved is not None:
            self.log.truncate_after(self.history.step // config.iterations)

    def _restore_scaler(self, saved: dict[str, Any]) -> None:
        """Continue the loss scale of an fp16 run; a run resumed in another precision (a CPU-started run
        resumed on a GPU saved a disabled scaler, whose state is empty) starts with a fresh scale."""
        state = saved.get("scaler") or {}
        if self.scaler.is_enabled() and state:
            self.scaler.load_state_dict(state)
        started_in = saved.get("precision", "fp16" if state else None)  # absent before bratsx recorded it
        if started_in is not None and started_in != self.precision:
            logger.warning("%s: resuming a run trained in %s in %s; its losses will differ from an uninterrupted "
                           "run's", self.config.run_dir, started_in, self.precision)

    def _saved_state(self) -> dict[str, Any] | None:
        last = self.checkpoints / "last.pt"
        if not self.config.resume:
            if last.exists():
                raise BratsxError(
                    f"{self.config.run_dir} already holds a run (checkpoints/last.pt); "
                    "pass --resume to continue it, or choose another --out"
                )
            return None
        if not last.exists():
            raise BratsxError(f"--resume: {last} does not exist; start the run without --resume")
        saved = load_checkpoint(last)
        _check_resume(self.config, saved["config"])
        return saved

    def _cache(self, train: list[Case], val: list[Case]) -> tuple[list[CachedCase], list[CachedCase]]:
        """Build this rank's share of the cache entries, wait for the other ranks', read them all."""
        cache_dir = self.config.cache_dir or default_cache_dir()
        everything = train + val
        share = everything[self.distributed.rank :: self.distributed.world]
        done = 0

        def progress(case_id: str, built: bool) -> None:
            nonlocal done
            done += 1
            self.emit(CacheProgress(case_id, built, done, len(share)))

        error: Exception | None = None
        try:
            build_cache(share, cache_dir, on_case=progress)
        except Exception as problem:  # re-raised below, once the other ranks know this one failed
            error = problem
        timeout = _work_timeout(len(everything), self.distributed.world)
        [failures] = self.distributed.sum_after_work([error is not None], timeout)
        if error is not None:
            raise error
        if failures:
            raise BratsxError("another training process could not preprocess its share of the cases; "
                              "its error is in its output")
        cached = read_cache(everything, cache_dir)
        return cached[: len(train)], cached[len(train) :]

    def _loader(self) -> DataLoader:
        config = self.config
        sampler = PatchSampler(self.train_cases, config.patch, config.foreground_fraction, config.seed)
        indices = IndexRange(self.history.step * config.accumulate, config.total_steps * config.accumulate,
                             config.batch_size, self.distributed.rank, self.distributed.world)
        return DataLoader(
            PatchDataset(sampler),
            batch_size=config.batch_size,
            sampler=indices,
            num_workers=config.workers,
            persistent_workers=config.workers > 0,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_ignore_sigint_in_worker if config.workers > 0 else None,
        )

    # running ----------------------------------------------------------------------------------

    def _step(self, batches, step: int) -> tuple[float, float]:
        """One optimizer step over ``accumulate`` micro-batches; returns (loss, seconds waiting for data)."""
        config = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = _poly_lr(config, step)
        total, waited = 0.0, 0.0
        autocast = (torch.autocast(self.device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype else nullcontext())
        for micro in range(config.accumulate):
            started = time.perf_counter()
            images, labels = next(batches)
            waited += time.perf_counter() - started
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            micro_index = (step * config.accumulate + micro) * self.distributed.world + self.distributed.rank
            images, labels = augment_batch(images, labels, config.augment, config.seed, micro_index)
            with autocast:
                outputs = self.wrapped(images.contiguous(memory_format=self.memory_format))
            loss = self.loss(outputs, labels) / config.accumulate
            self.scaler.scale(loss).backward()
            total += float(loss.detach())
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return total, waited

    def _validate(self, epoch: int) -> dict[str, float]:
        """Dice per region over the validation cases, each rank validating its share; the same on every rank."""
        world, history = self.distributed.world, self.history
        share = self.val_cases[self.distributed.rank :: world]
        sums = np.zeros(len(REGION_ORDER))
        for case in share:
            scores = validate(self.model, [case], self.config.patch, self.config.output_mode, self.device,
                              self.config.val_overlap, autocast_dtype=self.autocast_dtype)
            sums += [scores[region.value] for region in REGION_ORDER]
        *totals, count = self.distributed.sum_after_work([*sums, len(share)],
                                                         _work_timeout(len(self.val_cases), world))
        dice = {region.value: total / count for region, total in zip(REGION_ORDER, totals)}
        dice["mean"] = float(np.mean(totals) / count)
        improved = dice["mean"] > history.best_mean
        if improved:
            history.best_mean, history.validations_since_best = dice["mean"], 0
            history.best_dice = {k: v for k, v in dice.items() if k != "mean"}
            self.contract = self.contract.with_validation_dice(history.best_dice)
            self._save("best.pt", epoch)
        else:
            history.validations_since_best += 1
        self.emit(ValidationDone(epoch, dice, improved))
        return dice

    def _save(self, name: str, epoch: int) -> None:
        if not self.distributed.is_main:
            return
        save_checkpoint(
            {
                "contract": self.contract.to_dict(),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "precision": self.precision,
                "scheduler": {"name": "poly", "exponent": self.config.poly_exponent, "initial_lr": self.config.lr,
                              "total_steps": self.config.total_steps},
                "step": self.history.step,
                "epoch": epoch,
                "rng": {"torch": torch.get_rng_state()},
                "split": self.split.to_dict(),
                "history": self.history.to_dict(),
                "config": self.config.to_dict(),
            },
            self.checkpoints / name,
        )

    def run(self, stop: threading.Event) -> TrainResult:
        config, history = self.config, self.history
        started = time.perf_counter()
        self.emit(TrainingStarted(history.step, config.total_steps, config.iterations, len(self.train_cases),
                                  len(self.val_cases), str(self.device), self.precision, self.parallel,
                                  self.initialised))
        batches = iter(self._loader())
        stopped = "completed"
        self.wrapped.train()
        while history.step < config.total_steps:
            step_started = time.perf_counter()
            loss, waited = self._step(batches, history.step)
            history.step += 1
            history.epoch_losses.append(loss)
            history.epoch_wait += waited
            history.epoch_seconds += time.perf_counter() - step_started
            epoch, within = divmod(history.step, config.iterations)
            self.emit(StepDone(history.step, epoch + (within > 0), loss, float(np.mean(history.epoch_losses)),
                               _poly_lr(config, history.step - 1)))
            if within == 0 and self._end_epoch(epoch):
                stopped = "early-stopping"
                break
            if self.distributed.any(stop.is_set(), self.device):
                stopped = "interrupted"
                break
            over_budget = config.max_time is not None and time.perf_counter() - started > config.max_time
            if self.distributed.any(over_budget, self.device):
                stopped = "time-budget"
                if within:  # mid-epoch: validate what the budget bought, so best.pt reflects it
                    self._log_partial_epoch(epoch + 1)
                break
        self._save("last.pt", math.ceil(history.step / config.iterations))
        if self.log is not None:
            self.log.close()
        return TrainResult(config.run_dir, history.step, history.step // config.iterations, stopped,
                           history.best_dice, time.perf_counter() - started)

    def _epoch_record(self, epoch: int) -> dict[str, Any]:
        """Loss, learning rate, speed and data wait of the (possibly partial) current epoch."""
        history = self.history
        seconds, steps = history.epoch_seconds, len(history.epoch_losses)
        return {
            "epoch": epoch,
            "step": history.step,
            "train_loss": self.distributed.mean(float(np.mean(history.epoch_losses)), self.device),
            "lr": _poly_lr(self.config, history.step - 1),
            "seconds": seconds,
            "it_per_s": steps / seconds if seconds else 0.0,
            "data_wait_fraction": history.epoch_wait / seconds if seconds else 0.0,
        }

    def _validate_into(self, record: dict[str, Any], epoch: int) -> None:
        dice = self._validate(epoch)
        record.update({f"val_dice_{k}": v for k, v in dice.items()})
        record["best"] = self.history.validations_since_best == 0

    def _log(self, record: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.append(record)
            if "val_dice_mean" in record:
                self.log.draw_curves()

    def _log_partial_epoch(self, epoch: int) -> None:
        """Validate and log an epoch cut short by the time budget (a resumed run redoes the epoch)."""
        record = {**self._epoch_record(epoch), "partial": True}
        self._validate_into(record, epoch)
        self._log(record)
        self.emit(EpochDone(record))

    def _end_epoch(self, epoch: int) -> bool:
        """Log the finished epoch, validate when due, save; True when early stopping ends the run."""
        config, history = self.config, self.history
        record = self._epoch_record(epoch)
        history.epoch_losses, history.epoch_wait, history.epoch_seconds = [], 0.0, 0.0
        if epoch % config.val_every == 0 or epoch == config.epochs:
            self._validate_into(record, epoch)
        self._log(record)
        self._save("last.pt", epoch)
        self.emit(EpochDone(record))
        patience_over = config.patience is not None and history.validations_since_best >= config.patience
        return self.distributed.any(patience_over, self.device)


def train(
    config: TrainConfig,
    on_event: Callable[[TrainEvent], None] | None = None,
    stop: threading.Event | None = None,
    distributed: DistributedContext | None = None,
) -> TrainResult:
    """Train a network on the labelled cases of ``config.data_dir``.

    SIGINT and SIGTERM (when called from the main thread) finish the current step, save
    ``last.pt`` and return with ``stopped == "interrupted"``; so does setting ``stop``.

    Args:
        config: the run's options.
        on_event: receives progress events (only on the main process of a distributed run).
        stop: set it to stop after the current step.
        distributed: this process's place in a ``torchrun`` job; default: not distributed.

    Returns:
        How the run ended, with the best validation Dice.

    Raises:
        BratsxError: bad data or options, found before any training starts.
    """
    distributed = distributed or DistributedContext()
    stop = stop or threading.Event()
    received: list[int] = []
    run = _Run(config, distributed, on_event or (lambda event: None))
    distributed.start(run.device)
    previous = _install_stop_handlers(stop, received)
    try:
        with _cudnn_autotune(run.device):
            run.prepare()
            result = run.run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        distributed.stop()
    if received:
        return TrainResult(result.run_dir, result.steps, result.epochs, result.stopped, result.best_dice,
                           result.seconds, signal.Signals(received[0]).name)
    return result
