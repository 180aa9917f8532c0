"""The app's state, in one object: the settings, the open models, the job queue, the batch under review.

:meth:`AppState.open` does everything that can fail before the server listens (opening the model,
reading the batch), so ``bratsx serve`` reports a bad option as one line instead of starting a
server that cannot work.

A backend's ``run`` may not be called from two threads at once (see
:class:`~bratsx.runtime.backends.Backend`), so the app opens one runner per job slot
(``--jobs-per-model``): each job borrows a runner of its own for as long as it runs, and ``--threads``
is split between them.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import BratsxError
from ..runtime.backends import BackendName
from ..runtime.ensemble import ModelSpec
from ..runtime.runner import Runner, RunnerSpec
from .job import run_job
from .jobs import JOB_FOLDER, Job, JobQueue, Progress
from .presentation import job_result, model_description
from .review import ReviewBatch
from .settings import ServeSettings

__all__ = ["AppState", "remove_stale_jobs"]


def remove_stale_jobs(data_dir: Path, max_age_s: float) -> list[Path]:
    """Delete the job folders an earlier server left in ``data_dir`` more than ``max_age_s`` ago.

    Only folders named as the queue names them (``job-<32 hex digits>``) are touched.
    """
    removed = []
    now = time.time()
    for entry in sorted(data_dir.iterdir()):
        if JOB_FOLDER.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink() \
                and now - entry.stat().st_mtime >= max_age_s:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


class RunnerPool:
    """One open runner per job slot: a job borrows one for itself alone and gives it back when it ends.

    Args:
        runners: as many as the queue runs jobs at once, so borrowing never waits.
    """

    def __init__(self, runners: Sequence[Runner]) -> None:
        self.runners = list(runners)
        self._free: queue.SimpleQueue[Runner] = queue.SimpleQueue()
        for runner in self.runners:
            self._free.put(runner)

    @classmethod
    def open(cls, spec: RunnerSpec, slots: int, threads: int | None) -> RunnerPool:
        """Open ``slots`` runners of ``spec``, sharing ``threads`` CPU threads (``None``: every core each)."""
        share = max(1, threads // slots) if threads else None
        runners: list[Runner] = []
        try:
            for _ in range(slots):
                runners.append(spec.open("cpu", share))
        except BaseException:
            for runner in runners:
                runner.close()
            raise
        return cls(runners)

    @contextmanager
    def borrow(self) -> Iterator[Runner]:
        runner = self._free.get()
        try:
            yield runner
        finally:
            self._free.put(runner)

    def run(self, job: Job, progress: Progress) -> dict[str, Any]:
        """A job's run on a borrowed runner: :func:`~bratsx.serve.job.run_job`, then what the page shows."""
        with self.borrow() as runner:
            outcome = run_job(job, runner, progress)
        return job_result(job, outcome, model_description(runner))

    def close(self) -> None:
        for runner in self.runners:
            runner.close()


@dataclass
class AppState:
    """What the routes share.

    Attributes:
        settings: how the app runs.
        data_dir: where job folders go.
        model: one open runner per job slot (``None``: review only).
        queue: the job queue (``None`` without a model).
        review: the batch under review (``None`` outside review mode).
        owns_data_dir: whether ``data_dir`` is a temporary folder to delete at exit.
    """

    settings: ServeSettings
    data_dir: Path
    model: RunnerPool | None
    queue: JobQueue | None
    review: ReviewBatch | None
    owns_data_dir: bool

    @classmethod
    def open(cls, settings: ServeSettings) -> AppState:
        """Open the model, read the batch under review, prepare the data folder.

        Raises:
            BratsxError: the model cannot be opened, the batch cannot be read, or the data folder cannot be used.
        """
        if settings.model is None and not settings.review:
            raise BratsxError("nothing to serve: give a model to segment uploads, or --cases and --predictions to "
                              "review a batch")
        review = ReviewBatch(settings.cases_dir, settings.predictions_dir, settings.labels) if settings.review else None
        model = None
        if settings.model:
            spec = RunnerSpec(ModelSpec(paths=(settings.model,), backend=BackendName(settings.backend).value))
            model = RunnerPool.open(spec, settings.jobs_per_model, settings.threads)
            others = model.runners[0].contract.other_channels
            if others:  # uploads are FLAIR, T1, T1ce and T2 (and a segmentation): say so before a page is served
                model.close()
                raise BratsxError(f"{settings.model}: the model takes {', '.join(others).upper()}, and the web app "
                                  "uploads FLAIR, T1, T1ce and T2 only; segment such cases with bratsx infer")
        try:
            if settings.data_dir is not None:
                settings.data_dir.mkdir(parents=True, exist_ok=True)
                remove_stale_jobs(settings.data_dir, settings.expire_seconds)
            data_dir = settings.data_dir or Path(tempfile.mkdtemp(prefix="bratsx-serve-"))
        except OSError as error:
            if model is not None:
                model.close()
            raise BratsxError(f"--data-dir {settings.data_dir}: cannot use it ({error.strerror or error})") from None
        jobs = JobQueue(model.run, settings.jobs_per_model, settings.expire_seconds) if model else None
        return cls(settings, data_dir, model, jobs, review, settings.data_dir is None)

    def start(self) -> None:
        if self.queue is not None:
            self.queue.start()

    def close(self) -> None:
        """Stop the queue (a running job finishes), close the model, delete a temporary data folder (once)."""
        if self.queue is not None:
            self.queue.stop()
            self.queue = None
        if self.model is not None:
            self.model.close()
            self.model = None
        if self.owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def info(self) -> dict[str, Any]:
        """What the page needs to know about the server."""
        settings = self.settings
        return {"version": __version__, "segment": self.model is not None, "review": self.review is not None,
                "model": model_description(self.model.runners[0]) if self.model is not None else None,
                "max_upload_mb": settings.max_upload_mb, "max_files": settings.max_files,
                "max_queued_jobs": settings.max_queued_jobs, "expire_minutes": settings.expire_minutes}
