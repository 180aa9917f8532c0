"""``bratsx train --init``: start a new run from the weights of a model folder, an ONNX file or a checkpoint.

Fine-tuning continues a network that already learnt something (the bundled model, or an earlier run
whose checkpoints are gone) with a fresh optimizer and schedule. The source must hold the same network
(features, output mode, channels): its weights are copied by name, and nothing is guessed.

An exported ONNX file names each weight ``network.<state-dict key>``; deep-supervision heads are not
exported (inference uses the finest head only), so those few weights keep their seeded initialisation
and the run says so. The export stores instance-norm scales and shifts broadcastable, (1, C, 1, 1, 1):
they are read back as the (C,) vectors the network holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import BratsxError
from ..modelfolder import MODEL_FILES
from ..network.checkpoint import load_checkpoint
from ..network.unet import UNet3D

__all__ = ["InitReport", "initialise_from"]

_ONNX_PREFIX = "network."


@dataclass(frozen=True)
class InitReport:
    """What ``--init`` copied: the source file, how many tensors, and which weights kept their seeded values."""

    source: Path
    copied: int
    kept_seeded: tuple[str, ...]

    def describe(self) -> str:
        """One line for the run's output."""
        kept = f"; {len(self.kept_seeded)} kept their seeded values ({', '.join(self.kept_seeded)})" \
            if self.kept_seeded else ""
        return f"initialised from {self.source}: {self.copied} weight tensors{kept}"


def _source_file(source: Path) -> Path:
    """The file behind ``source``: a model folder's fp32 ONNX, or the file itself."""
    if source.is_dir():
        candidate = source / MODEL_FILES["fp32"]
        if not candidate.is_file():
            raise BratsxError(f"--init {source}: a folder must be a bratsx model folder holding {MODEL_FILES['fp32']}")
        return candidate
    if not source.is_file():
        raise BratsxError(f"--init {source}: no such file or folder")
    return source


def _onnx_weights(path: Path) -> dict[str, np.ndarray]:
    """The network's weights in an exported ONNX file, by state-dict key."""
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(path)).graph
    except Exception as error:  # onnx raises DecodeError and others for a file that is not ONNX
        raise BratsxError(f"--init {path}: not a readable ONNX file ({type(error).__name__})") from error
    return {init.name[len(_ONNX_PREFIX):]: numpy_helper.to_array(init)
            for init in graph.initializer if init.name.startswith(_ONNX_PREFIX)}


def _weights_of(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".onnx":
        return {key: torch.from_numpy(np.array(value)) for key, value in _onnx_weights(path).items()}
    return dict(load_checkpoint(path)["model"])


def _as_held(value: torch.Tensor, held: torch.Tensor) -> torch.Tensor:
    """``value`` in the shape the network holds it, when it differs only by axes of size 1 (a staged norm)."""
    if tuple(value.shape) != tuple(held.shape) and tuple(value.squeeze().shape) == tuple(held.shape):
        return value.reshape(held.shape)
    return value


def initialise_from(source: Path, network: UNet3D) -> InitReport:
    """Copy ``source``'s weights into ``network`` (in place).

    Raises:
        BratsxError: the source is missing or unreadable, holds none of the network's weights, holds a
            weight the network lacks, or a weight of another shape (another architecture).
    """
    path = _source_file(Path(source))
    state = network.state_dict()
    weights = {key: _as_held(value, state[key]) if key in state else value
               for key, value in _weights_of(path).items()}
    unknown = sorted(set(weights) - set(state))
    if unknown:
        raise BratsxError(f"--init {path}: weights this network does not have ({', '.join(unknown[:3])}...): "
                          "another architecture; give the same --features and --output-mode as the source")
    wrong = [f"{key} {tuple(value.shape)} vs {tuple(state[key].shape)}"
             for key, value in weights.items() if tuple(value.shape) != tuple(state[key].shape)]
    if wrong:
        raise BratsxError(f"--init {path}: weight shapes differ ({'; '.join(wrong[:2])}): another architecture; "
                          "give the same --features and --output-mode as the source")
    if not weights:
        raise BratsxError(f"--init {path}: holds no bratsx network weights")
    state.update({key: value.to(state[key].dtype) for key, value in weights.items()})
    network.load_state_dict(state)
    return InitReport(path, len(weights), tuple(sorted(set(state) - set(weights))))
