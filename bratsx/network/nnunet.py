"""nnU-Net v2 networks in PyTorch, rebuilt safely: what ``bratsx import nnunet`` exports and the torch backend runs.

Every fold's network is built by nnU-Net's own ``get_network_from_plans`` (``dynamic_network_architectures``:
PlainConvUNet, the ResEnc presets) and loaded with ``torch.load(weights_only=True)``; the folds become one
network that averages their logits (:class:`FoldEnsemble`, as nnU-Net averages folds).

Checkpoints are loaded in PyTorch's restricted ``weights_only`` mode, allowing beyond its defaults only the numpy
scalar and dtype types nnU-Net's training logs hold (plain data); anything else is refused, never loaded unsafely.
Network classes are taken only from ``dynamic_network_architectures`` and their layers only from ``torch.nn``, so
a plans file cannot make bratsx import arbitrary code. This module sits beside bratsx's own U-Net (below the
importers, the export and the runtime), so the runtime's torch backend can rebuild an imported folder's networks.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..contract import ModelContract, file_sha256
from ..errors import BratsxError
from .checkpoint import TrainedModel

if TYPE_CHECKING:
    from ..modelfolder import ModelFolder

__all__ = ["FoldEnsemble", "load_checkpoint", "network_for_fold", "trained_from_import"]

#: Where a plans file may take its network class from, and its layers.
_NETWORK_PACKAGE = "dynamic_network_architectures.architectures."
_LAYER_PACKAGE = "torch.nn."
#: Plain-data numpy types nnU-Net's checkpoints hold (EMA Dice, logged metrics), allowed in weights_only loading.
_NUMPY_DATA_TYPES = (np._core.multiarray.scalar, np.dtype, np.dtypes.Float32DType, np.dtypes.Float64DType,
                     np.dtypes.Int64DType)


class FoldEnsemble(nn.Module):
    """The folds' networks as one: the mean of their logits (nnU-Net averages folds' logits before the activation)."""

    def __init__(self, networks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.folds = nn.ModuleList(networks)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        total = self.folds[0](image)
        for network in self.folds[1:]:
            total = total + network(image)
        return total / len(self.folds) if len(self.folds) > 1 else total


def load_checkpoint(path: Path) -> dict[str, Any]:
    """An nnU-Net checkpoint, loaded with ``torch.load(weights_only=True)`` (see the module docstring).

    Raises:
        BratsxError: the file is not a checkpoint, or needs types that weights-only loading refuses.
    """
    try:
        with torch.serialization.safe_globals(list(_NUMPY_DATA_TYPES)):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        needed = _unsafe_globals(path)
        raise BratsxError(f"{path}: refused: loading it needs {needed or 'objects'} beyond plain tensors and data "
                          "(torch.load weights_only=True); bratsx never loads a checkpoint unsafely, re-save its "
                          "'network_weights' as plain tensors") from error
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise BratsxError(f"{path}: not a readable PyTorch checkpoint ({error})") from error
    if not isinstance(checkpoint, dict) or "network_weights" not in checkpoint:
        raise BratsxError(f"{path}: not an nnU-Net checkpoint (no 'network_weights')")
    return checkpoint


def _unsafe_globals(path: Path) -> str:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # the listing is a courtesy for the message; the refusal stands without it
        return ""
    allowed = {f"{t.__module__}.{t.__qualname__}" for t in _NUMPY_DATA_TYPES}
    return ", ".join(sorted(set(names) - allowed)[:3])


def _locate(name: str, package: str, what: str, where: Path) -> Any:
    import pydoc

    found = pydoc.locate(name) if name.startswith(package) else None
    if found is None:
        raise BratsxError(f"{where}: unknown {what} {name!r}; bratsx builds networks from {package}* only")
    return found


def network_for_fold(contract: ModelContract, plans_file: Path, checkpoint_path: Path, checkpoint: dict[str, Any]
                     ) -> nn.Module:
    """One fold's network, built by nnU-Net's ``get_network_from_plans``, its weights loaded strictly, in eval mode.

    Raises:
        BratsxError: an unknown network class or layer, or weights that do not fit the network.
    """
    try:
        from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    except ImportError:
        raise BratsxError("bratsx import nnunet builds networks with nnU-Net's own code: pip install "
                          "'bratsx[nnunet]'") from None
    architecture = contract.network
    _locate(architecture["network_class_name"], _NETWORK_PACKAGE, "network class", plans_file)
    kwargs = dict(architecture["arch_kwargs"])
    for key in architecture["arch_kwargs_requiring_import"]:
        if kwargs.get(key) is not None:
            _locate(kwargs[key], _LAYER_PACKAGE, f"layer ({key})", plans_file)
    network = get_network_from_plans(architecture["network_class_name"], kwargs,
                                     architecture["arch_kwargs_requiring_import"], len(contract.modality_order),
                                     contract.output_mode.channels, allow_init=False, deep_supervision=False)
    try:
        network.load_state_dict(checkpoint["network_weights"])
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise BratsxError(f"{checkpoint_path}: the weights do not fit {architecture['network_class_name']} "
                          f"as plans.json describes it ({first})") from error
    return network.eval()


def trained_from_import(folder: ModelFolder) -> TrainedModel:
    """The networks of a folder ``bratsx import nnunet`` wrote, rebuilt from the results folder it records (what the
    torch backend runs): the same folds and checkpoint files, each file's SHA-256 checked against ``model.json``.

    Raises:
        BratsxError: the folder was not imported from nnU-Net, or its results folder or a checkpoint is gone or
            changed since the import.
    """
    source = folder.info.get("source", {})
    if folder.imported_from != "nnunetv2":
        raise BratsxError(f"model {folder.path}: not imported from nnU-Net (its source: {folder.imported_from})")
    results_dir = Path(source["results"])
    if not results_dir.is_dir():
        raise BratsxError(f"model {folder.path}: its nnU-Net results folder {results_dir} is gone; the torch backend "
                          "rebuilds the networks from it (the ONNX backends need only the model folder)")
    contract = folder.contract
    networks = []
    for fold in source["folds"]:
        path = results_dir / f"fold_{fold}" / source["checkpoint_name"]
        if not path.is_file() or file_sha256(path) != source["checkpoint_sha256"][str(fold)]:
            raise BratsxError(f"{path}: missing or changed since model {folder.path} was imported from it (SHA-256 "
                              "differs); import the results folder again")
        networks.append(network_for_fold(contract, results_dir / "plans.json", path, load_checkpoint(path)))
    first = results_dir / f"fold_{min(source['folds'])}" / source["checkpoint_name"]
    return TrainedModel(FoldEnsemble(networks).eval(), contract, first)
