"""The model(s) one inference worker runs, opened once per worker, and what its records say about them.

``bratsx infer`` may average several models (an ensemble). Every scheduler opens them the same way, through
the runner's spec (:class:`~bratsx.runtime.runner.RunnerSpec`, which pairs a :class:`ModelSpec` with the
segmentation settings): the threads path in the command's own process, each worker process of
:mod:`~bratsx.runtime.parallel`, each Ray actor of :mod:`~bratsx.runtime.ray_runner` and each job slot of
the web app. A :class:`ModelSpec` is the picklable description they are handed (files and backend, not open
sessions), and :func:`model_identity` is the one place that says what a record stores about the model, so
a resumed or distributed run judges staleness alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..contract import ModelContract, ensemble_differences, file_sha256
from ..errors import BratsxError
from ..labels import OutputMode
from ..modelfolder import MODEL_JSON, ModelFolder, find_model_folder
from .backends import Backend, BackendBase, BackendName
from .models import OpenedModel, open_model

__all__ = ["AveragedBackend", "Ensemble", "EnsembleOpener", "ModelSpec", "model_identity", "open_ensemble_folder"]


@dataclass
class Ensemble:
    """Open models sharing one contract; closing it closes them all.

    Attributes:
        backends: the open models, averaged tile by tile.
        contract: their shared contract.
        identity: what records say about them (see :func:`model_identity`).
    """

    backends: list[Backend]
    contract: ModelContract
    identity: dict[str, Any]
    _stack: ExitStack = field(default_factory=ExitStack, repr=False)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Ensemble:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EnsembleOpener(Protocol):
    """What a scheduler is given to open the models in each worker: picklable, opened where it runs."""

    def open(self, device: str, threads: int | None) -> Ensemble:
        """Open the models on ``device`` (``cpu`` or ``cuda``) with ``threads`` CPU threads (``None``: all)."""
        ...


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Model files and the backend to run them with: what crosses into worker processes and Ray actors.

    Attributes:
        paths: one path per model of the ensemble (see :func:`~bratsx.runtime.models.open_model`).
        backend: a :class:`~bratsx.runtime.backends.BackendName` value.
        ort_tensorrt: ort on CUDA: ONNX Runtime's TensorRT execution provider first.
    """

    paths: tuple[Path, ...]
    backend: str = BackendName.AUTO.value
    ort_tensorrt: bool = False

    def open(self, device: str, threads: int | None) -> Ensemble:
        """Open every model with :func:`~bratsx.runtime.models.open_model`.

        Raises:
            BratsxError: a model cannot be opened, or the models differ in patch size or output mode.
        """
        stack = ExitStack()
        try:
            opened = [stack.enter_context(open_model(path, self.backend, device=device, threads=threads,
                                                     ort_tensorrt=self.ort_tensorrt)) for path in self.paths]
            contract = opened[0].contract
            differences = ensemble_differences([o.contract for o in opened])
            if differences:
                raise BratsxError(f"the models of an ensemble must share their {' and '.join(differences)}; "
                                  f"{', '.join(str(path) for path in self.paths)} do not")
        except BaseException:
            stack.close()
            raise
        return Ensemble([o.backend for o in opened], contract, model_identity(opened), stack)


def model_identity(opened: Sequence[OpenedModel]) -> dict[str, Any]:
    """What a record says about the models: files, their hashes, model folders, backend, device, precision.

    ``sha256`` (of each file run, or of the checkpoint a torch model came from) decides whether an
    earlier output is stale; ``folders`` names each model folder with the hash of its ``model.json``
    (contract, gates and file hashes), for provenance.
    """
    first = opened[0].backend
    folders = [find_model_folder(o.file) for o in opened]
    return {
        "files": [str(o.file) for o in opened],
        "sha256": ",".join(file_sha256(o.file) if o.file.is_file() else o.contract.checkpoint_sha256 or ""
                           for o in opened),
        "folders": [{"path": str(f.path), "model_json_sha256": file_sha256(f.path / MODEL_JSON)} if f else None
                    for f in folders],
        "backend": first.name, "device": first.device, "precision": first.precision,
    }


class AveragedBackend(BackendBase):
    """The members of an ensemble model folder as one backend: each tile's logits averaged over the members, the
    activation applied once (as :func:`~bratsx.runtime.segment.tile_predictor` averages ``--model A --model B``),
    so every consumer of :func:`~bratsx.runtime.models.open_model` (infer, bench, serve) runs the whole ensemble.
    It returns what its members return: probabilities when ``activated``, else the averaged logits."""

    def __init__(self, members: Sequence[Backend], output_mode: OutputMode, activated: bool = True) -> None:
        self.members, self.output_mode, self.activated = list(members), OutputMode(output_mode), activated
        first = self.members[0]
        self.name, self.device, self.precision = first.name, first.device, first.precision
        self.input_shape, self.output_shape = first.input_shape, first.output_shape

    @property
    def preferred_batch(self) -> int:
        return self.members[0].preferred_batch

    def run(self, batch: np.ndarray) -> np.ndarray:
        from .segment import logits_from_outputs, probabilities_from_logits

        total = sum(logits_from_outputs(m.run(batch), self.output_mode, self.activated) for m in self.members)
        mean = total / np.float32(len(self.members))
        return probabilities_from_logits(mean, self.output_mode) if self.activated else mean

    def close(self) -> None:
        for member in self.members:
            member.close()


def open_ensemble_folder(folder: ModelFolder, open_member: Callable[[Path], OpenedModel]) -> OpenedModel:
    """Open an ensemble model folder (``model.json`` lists ``members``): every member with ``open_member``, as one
    :class:`AveragedBackend` under the folder's contract (and its tuned post-processing).

    Raises:
        BratsxError: a member cannot be opened, or the members differ in patch size or output mode.
    """
    tuned = folder.postprocess
    contract = folder.contract if tuned is None else replace(folder.contract, postprocess=tuned.to_dict())
    stack = ExitStack()
    try:
        opened = [stack.enter_context(open_member(member.path)) for member in folder.members]
        if any(o.contract.patch_size != contract.patch_size or o.contract.output_mode != contract.output_mode
               or o.contract.outputs != contract.outputs for o in opened):
            raise BratsxError(f"{folder.path}: its members must share the patch size, output mode and outputs "
                              "(probabilities or logits) it records")
    except BaseException:
        stack.close()
        raise
    stack.pop_all()
    return OpenedModel(AveragedBackend([o.backend for o in opened], contract.output_mode, contract.activated), contract,
                       folder.path / MODEL_JSON)
