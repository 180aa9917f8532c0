"""Checkpoints: written atomically, readable with ``torch.load(..., weights_only=True)``.

A checkpoint holds only tensors and plain Python values (dicts, lists, strings, numbers), so loading
one never runs pickled code. Layout::

    {
      "format": "bratsx-checkpoint", "format_version": 1,
      "contract": {...},            # ModelContract.to_dict(): what inference needs
      "model": state_dict,          # weights (without any DataParallel/DDP prefix)
      "optimizer": ..., "scaler": ..., "scheduler": {...},
      "step": int, "epoch": int, "rng": {...}, "split": {...}, "history": {...}, "config": {...}
    }
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path
from ..errors import BratsxError

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "bratsx-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        torch.save({"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **state}, temporary)
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
