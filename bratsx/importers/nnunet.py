"""``bratsx import nnunet``: an nnU-Net v2 results folder into an ordinary bratsx model folder.

The folds' networks are rebuilt safely by :mod:`bratsx.network.nnunet` (nnU-Net's own ``get_network_from_plans``,
``torch.load(weights_only=True)``, the folds averaged as logits), exported to ONNX with the contract embedded and
verified against PyTorch by bratsx's export (:func:`bratsx.export.pipeline.export_trained`, with its fp16 and int8
gates). The contract (:func:`~bratsx.importers.nnunet_folder.contract_from_results`) carries nnU-Net's
preprocessing and label set, which the runtime applies in :mod:`bratsx.runtime.model_grid`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..contract import file_sha256
from ..errors import BratsxError
from ..export.pipeline import ExportReport, check_model_folder_target, export_trained
from ..network.checkpoint import TrainedModel
from ..network.nnunet import FoldEnsemble, load_checkpoint, network_for_fold
from .nnunet_folder import NnunetResults, contract_from_results, read_results_folder
from .options import NnunetImport

__all__ = ["NnunetImport", "import_nnunet"]


def _mirror_axes(checkpoints: dict[int, dict[str, Any]], results: NnunetResults) -> tuple[int, ...]:
    axes = {tuple(c.get("inference_allowed_mirroring_axes") or ()) for c in checkpoints.values()}
    if len(axes) != 1:
        raise BratsxError(f"{results.path}: the folds allow different mirroring axes ({sorted(axes)}); import them "
                          "apart")
    return axes.pop()


def import_nnunet(results_dir: Path | str, out_dir: Path, options: NnunetImport | None = None,
                  on_step: Callable[[str], None] | None = None) -> ExportReport:
    """Import an nnU-Net v2 results folder into the model folder ``out_dir``.

    Everything is checked (folder, configuration, folds, checkpoints, channels, labels, network) before the
    folder is written, and it is written atomically: a refused import leaves nothing.

    Args:
        results_dir: the trained configuration folder (``.../Trainer__Plans__configuration``).
        out_dir: the model folder to write (an earlier model folder there is replaced).
        options: folds, checkpoint, channel mapping, export options.
        on_step: told each step's name as it starts.

    Returns:
        The export report (files written, agreement with PyTorch, gates).

    Raises:
        BratsxError: one line naming the file and the problem (see :func:`read_results_folder`,
            :func:`load_checkpoint`, :func:`network_for_fold`).
    """
    options = options or NnunetImport()
    step = on_step or (lambda name: None)
    check_model_folder_target(out_dir)
    step("reading the results folder")
    results = read_results_folder(results_dir, options.folds, options.checkpoint)
    contract = contract_from_results(results, options.channels)
    step("loading the folds' checkpoints")
    checkpoints = {fold: load_checkpoint(path) for fold, path in results.checkpoints.items()}
    contract = replace(contract, mirror_axes=_mirror_axes(checkpoints, results))
    networks = [network_for_fold(contract, results.path / "plans.json", results.checkpoints[fold], checkpoint)
                for fold, checkpoint in checkpoints.items()]
    hashes = {str(fold): file_sha256(path) for fold, path in results.checkpoints.items()}
    contract = contract.with_checkpoint(hashlib.sha256("".join(hashes.values()).encode()).hexdigest())
    trained = TrainedModel(FoldEnsemble(networks).eval(), contract, results.checkpoints[min(results.checkpoints)])
    folds = ",".join(map(str, results.checkpoints))
    source = {"description": f"nnU-Net v2 {results.path.parent.name} {results.configuration_name}, folds {folds}",
              "framework": "nnunetv2", "results": str(results.path.resolve()),
              "configuration": results.configuration_name, "checkpoint": None, "checkpoint_name": options.checkpoint,
              "folds": list(results.checkpoints), "checkpoint_sha256": hashes}
    return export_trained(trained, out_dir, source, options.export, step)
