"""Checkpoints: written atomically, readable with ``torch.load(..., weights_only=True)``.

A checkpoint holds only tensors and plain Python values (dicts, lists, strings, numbers), so loading
one never runs pickled code. Layout::

    {
      "format": "bratsx-checkpoint", "format_version": 1,
      "contract": {...},            # ModelContract.to_dict(): what inference needs
      "model": state_dict,          # weights (without any DataParallel/DDP prefix)
      "optimizer": ..., "scaler": ..., "scheduler": {...},
      "precision": "fp32" | "bf16" | "fp16",  # what trained it (a resume on another device starts a fresh scaler)
      "step": int, "epoch": int, "rng": {...}, "split": {...}, "history": {...}, "config": {...}
    }
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path
from ..contract import ModelContract, file_sha256
from ..errors import BratsxError
from .unet import NetworkConfig, UNet3D

__all__ = [
    "CHECKPOINT_FORMAT",
    "TrainedModel",
    "checkpoint_path",
    "load_checkpoint",
    "model_from_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "bratsx-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Saved through a handle: given a path, torch names the archive inside after the (temporary) file name.
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        torch.save({"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **state}, handle)
    return path


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load a bratsx checkpoint on the CPU, safely (``weights_only=True``).

    Raises:
        BratsxError: when the file is missing, unreadable, or not a bratsx checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise BratsxError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise BratsxError(f"{path}: not a readable bratsx checkpoint ({type(error).__name__})") from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise BratsxError(f"{path}: not a bratsx checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    if state.get("format_version", 0) > CHECKPOINT_VERSION:
        raise BratsxError(f"{path}: written by a newer bratsx (format {state['format_version']}); upgrade bratsx")
    return state


@dataclass(frozen=True)
class TrainedModel:
    """A network in eval mode with its contract, as read from a checkpoint, and the run's train/val split
    (``{"train": [case ids], "val": [case ids]}``) when the checkpoint records one."""

    network: UNet3D
    contract: ModelContract
    checkpoint: Path
    split: dict[str, list[str]] | None = None


def checkpoint_path(source: Path | str) -> Path:
    """The checkpoint a path names: a file as it is; a run directory means its best checkpoint (or its last
    one if it never validated).

    Raises:
        BratsxError: a directory that holds neither checkpoint.
    """
    source = Path(source)
    if source.is_dir():
        for name in ("best.pt", "last.pt"):
            candidate = source / "checkpoints" / name
            if candidate.is_file():
                return candidate
        raise BratsxError(f"{source}: no checkpoints/best.pt or last.pt; is it a bratsx run directory?")
    return source


def model_from_checkpoint(source: Path | str) -> TrainedModel:
    """Load the network and contract of a checkpoint file or run directory.

    Raises:
        BratsxError: when ``source`` is not a bratsx checkpoint or run directory.
    """
    path = checkpoint_path(source)
    state = load_checkpoint(path)
    try:
        contract = ModelContract.from_dict(state["contract"]).with_checkpoint(file_sha256(path))
        network = UNet3D(NetworkConfig.from_dict(contract.network))
        network.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise BratsxError(
            f"{path}: the checkpoint's contract or weights do not fit a bratsx network ({error})") from error
    split = state.get("split")
    return TrainedModel(network.eval(), contract, path, split if isinstance(split, dict) else None)
