"""Stand-ins for a network in scheduling tests: picklable, so they cross into worker processes and Ray actors."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bratsx.atomic import TEMPORARY_PREFIX
from bratsx.cases import Case
from bratsx.contract import ModelContract
from bratsx.runtime.backends import Backend, BackendBase
from bratsx.runtime.batch import run_batch
from bratsx.runtime.ensemble import Ensemble
from bratsx.runtime.infer import InferOptions
from bratsx.runtime.records import CaseRecord
from bratsx.runtime.runner import Runner
from bratsx.runtime.segment import SegmentOptions

PATCH = (16, 16, 16)
CONTRACT = ModelContract(PATCH, "regions", {"features": [4, 8]})


class SlowThreshold(BackendBase):
    """'Tumour' where FLAIR is bright; each batch of tiles takes ``seconds`` at least."""

    name = "toy"

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds

    def run(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        probability = 1.0 / (1.0 + np.exp(-4.0 * (batch[:, 0] - 1.5)))
        return np.stack([probability] * 3, axis=1).astype(np.float32)


@dataclass(frozen=True)
class StandIn:
    """Opens :class:`SlowThreshold` in each worker, leaving a file named by the worker's pid in ``pids``."""

    seconds_per_batch: float = 0.0
    pids: Path | None = None
    fail: str | None = None

    def open(self, device: str, threads: int | None) -> Ensemble:
        if self.pids is not None:
            self.pids.mkdir(exist_ok=True)
            (self.pids / str(os.getpid())).touch()
        if self.fail:
            from bratsx.errors import BratsxError

            raise BratsxError(self.fail)
        return Ensemble([SlowThreshold(self.seconds_per_batch)], CONTRACT, {"backend": "toy", "device": device})


def run_here(cases: list[Case], backends: list[Backend], contract: ModelContract, out: Path,
             options: InferOptions | None = None, *, segment: SegmentOptions | None = None,
             model_identity: dict | None = None) -> list[CaseRecord]:
    """:func:`~bratsx.runtime.batch.run_batch` on threads, with backends open in this process: its records."""
    runner = Runner.from_backends(backends, contract, segment, model_identity)
    return run_batch(cases, runner, out, options).records


def worker_pids(folder: Path, count: int, timeout: float = 60.0) -> list[int]:
    """The pids of ``count`` workers once each has opened its stand-in."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = sorted(int(p.name) for p in folder.glob("*")) if folder.is_dir() else []
        if len(pids) >= count:
            return pids
        time.sleep(0.05)
    raise TimeoutError(f"{count} workers did not start within {timeout} s")


def outputs(folder: Path, pattern: str = "*.nii.gz") -> list[str]:
    """The names of the files matching ``pattern`` in ``folder``, less bratsx's hidden temporaries.

    A worker killed while writing leaves a ``.bratsx-tmp-*`` file that a later run removes once stale
    (:func:`bratsx.atomic.remove_stale_temporaries`); it is never a user's output.
    """
    return sorted(p.name for p in folder.glob(pattern) if not p.name.startswith(TEMPORARY_PREFIX))


def same_files(first: Path, second: Path, pattern: str = "*.nii.gz") -> list[str]:
    """The names of the outputs matching ``pattern`` in ``first``, after checking ``second`` has the same bytes."""
    names = outputs(first, pattern)
    assert names == outputs(second, pattern)
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    return names
