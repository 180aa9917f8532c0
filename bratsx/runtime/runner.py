"""What runs a case: the opened model or ensemble, its contract, the segmentation settings and their identity.

A :class:`Runner` is the one object :func:`~bratsx.runtime.segment.segment_case` and
:func:`~bratsx.runtime.batch.run_batch` take: entry points pass only data (cases) beside it, as nnU-Net's
predictor object owns network, plans and labels. Its :attr:`Runner.spec` is the picklable description
(the model files and backend, not the open sessions, plus the settings) that worker processes and Ray
actors open where they run, so every scheduler segments with the same models and settings.

Stages that turn a case into the network's input, or its output back into the case's geometry, belong
to :meth:`Runner.prepare` (today: load and preprocess as the contract says; later: resampling to a
model's spacing, raw-scan preparation), so every door (CLI, worker processes, Ray, serve, demo, bench)
gets them at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..cases import Case
from ..contract import ModelContract
from ..errors import BratsxError
from .backends import Backend
from .ensemble import Ensemble, EnsembleOpener
from .segment import PreparedCase, SegmentOptions, check_window, overlap_for, prepare_case

__all__ = ["Runner", "RunnerSpec"]


@dataclass(frozen=True)
class RunnerSpec:
    """A runner as it crosses into a worker process or a Ray actor: picklable, opened where it runs.

    Attributes:
        models: opens the model(s) (e.g. a :class:`~bratsx.runtime.ensemble.ModelSpec`).
        options: how each case is segmented.
    """

    models: EnsembleOpener
    options: SegmentOptions = field(default_factory=SegmentOptions)

    def open(self, device: str = "cpu", threads: int | None = None) -> Runner:
        """Open the models on ``device`` with ``threads`` CPU threads (``None``: every core).

        Raises:
            BratsxError: a model cannot be opened.
        """
        ensemble = self.models.open(device, threads)
        try:
            return Runner(ensemble, self.options, self.models)
        except BaseException:
            ensemble.close()
            raise


class Runner:
    """Open model(s), their contract, how cases are segmented, and what records say about both.

    Closing it (or leaving its ``with`` block) closes the models; the contract, the identity and the
    spec stay readable, so a caller may open a runner to check the model, close it, and hand it to a
    scheduler whose workers open their own.

    Args:
        ensemble: the open models and their identity.
        options: how each case is segmented (window, overlap, TTA, post-processing, label convention).
        models: how to open the same models elsewhere (``None``: this runner runs in this process only).

    Raises:
        BratsxError: the options ask what the open models cannot do (``--window box`` on a TensorRT engine),
            refused here so that a run stops before its first case.
    """

    def __init__(self, ensemble: Ensemble, options: SegmentOptions | None = None,
                 models: EnsembleOpener | None = None) -> None:
        self.ensemble = ensemble
        self.options = options or SegmentOptions()
        self.models = models
        check_window(ensemble.backends, self.options)

    @classmethod
    def from_backends(cls, backends: Sequence[Backend], contract: ModelContract, options: SegmentOptions | None = None,
                      identity: dict[str, Any] | None = None) -> Runner:
        """A runner over backends already open in this process (its caller closes them)."""
        return cls(Ensemble(list(backends), contract, identity or {}), options)

    @classmethod
    def for_workers(cls, models: EnsembleOpener, contract: ModelContract, options: SegmentOptions | None = None,
                    identity: dict[str, Any] | None = None) -> Runner:
        """A runner whose models open only in the workers of a process or Ray scheduler, never here."""
        return cls(Ensemble([], contract, identity or {}), options, models)

    @property
    def backends(self) -> list[Backend]:
        """The open models, averaged tile by tile (empty once closed, or for :meth:`for_workers`)."""
        return self.ensemble.backends

    @property
    def contract(self) -> ModelContract:
        return self.ensemble.contract

    @property
    def identity(self) -> dict[str, Any]:
        """What records say about the models (see :func:`~bratsx.runtime.ensemble.model_identity`)."""
        return self.ensemble.identity

    @property
    def spec(self) -> RunnerSpec:
        """The picklable description worker processes and Ray actors open.

        Raises:
            BratsxError: the runner was built from backends open in this process only.
        """
        if self.models is None:
            raise BratsxError("this runner holds models opened in this process only; open it from a ModelSpec "
                              "(RunnerSpec(ModelSpec(...)).open()) to run it in worker processes or on Ray")
        return RunnerSpec(self.models, self.options)

    def settings(self) -> dict[str, Any]:
        """The segmentation options that change an output, as records keep them (and a rerun compares them)."""
        settings = dataclasses.asdict(self.options)
        settings.pop("sw_batch")  # the batch size changes speed, not the result
        settings["overlap"] = overlap_for(self.options, self.contract)
        if settings["convention"] is not None:
            settings["convention"] = self.options.convention.value
        return settings

    def with_options(self, options: SegmentOptions) -> Runner:
        """This runner's open models (shared, not reopened: closing either closes them) with other options."""
        return Runner(self.ensemble, options, self.models)

    def prepare(self, case: Case) -> PreparedCase:
        """The one place a case becomes the network's input (load, preprocess as the contract says).

        Raises:
            CaseError: the case cannot be loaded.
        """
        return prepare_case(case, self.contract, self.options.convention)

    def require_open(self) -> None:
        """Refuse to run a runner whose models are not open in this process.

        Raises:
            BratsxError: no open model.
        """
        if not self.backends:
            raise BratsxError("this runner has no model open in this process (closed, or opened only in workers); "
                              "open it with RunnerSpec.open, or run it with a process or Ray scheduler")

    def close(self) -> None:
        """Close the models (idempotent); contract, identity and spec stay readable."""
        self.ensemble.close()
        self.ensemble.backends = []

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
