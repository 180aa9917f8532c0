"""The job queue: uploads wait in line, worker threads segment them one at a time per model, results expire.

A job lives in its own folder, named by the server (``job-<32 hex digits>``, unguessable), under the
data folder. Its state (queued, running with its stage and tile count, done with its result, or
failed with its one-line message) is kept in memory and read by the page through the jobs API. A
job that raises, whatever it raises, fails alone: the worker records the message and takes the
next one. Finished jobs are deleted, folder and all, ``expire_seconds`` after they end.
"""

from __future__ import annotations

import logging
import queue
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cases import Case
from ..errors import BratsxError, failure_text
from ..runtime.segment import SegmentOptions

if TYPE_CHECKING:
    from ..prepare import PrepareOptions

__all__ = ["JOB_FOLDER", "Job", "JobQueue", "JobState", "Progress", "RawUpload", "new_job_folder"]

logger = logging.getLogger(__name__)

#: How job folders are named: the only folders the queue ever deletes.
JOB_FOLDER = re.compile(r"job-[0-9a-f]{32}")

#: Called by a running job: (stage, tiles done, tiles in all).
Progress = Callable[[str, int, int], None]


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def new_job_folder(data_dir: Path) -> tuple[str, Path]:
    """A fresh job id and its folder (created), both of the server's making."""
    job_id = secrets.token_hex(16)
    folder = data_dir / f"job-{job_id}"
    folder.mkdir()
    return job_id, folder


@dataclass(frozen=True)
class RawUpload:
    """Raw scans to prepare before segmenting (``bratsx infer --prepare``'s chain; see :mod:`bratsx.serve.job`).

    Attributes:
        folder: the extracted upload, holding exactly one raw case.
        case_id: that case's id, as :func:`~bratsx.prepare.ingest.discover_raw_cases` names it.
        options: how to prepare it.
    """

    folder: Path
    case_id: str
    options: PrepareOptions


@dataclass
class Job:
    """One uploaded case on its way through the queue.

    Attributes:
        id: 32 hex digits, the job's name in every URL.
        folder: its folder (uploads, outputs).
        case: the case as discovery found it in ``folder`` (for raw scans: once prepared; ``None`` before).
        options: how to segment it.
        inputs: the uploaded files' own names by role (shown in the page, never used as paths).
        state: where it is.
        raw: the raw scans to prepare first (``None``: the upload is a BraTS-ready case).
        stage: what a running job does (``preparing``, ``loading``, ``inference``, ``writing``, ``to native grids``).
        tiles: (done, in all) while the backend runs.
        error: why it failed (one line).
        result: what it produced (see :mod:`bratsx.serve.presentation`).
        submitted, started, finished: times (``time.time()``).
    """

    id: str
    folder: Path
    case: Case | None
    options: SegmentOptions
    inputs: dict[str, str]
    raw: RawUpload | None = None
    state: JobState = JobState.QUEUED
    stage: str = ""
    tiles: tuple[int, int] = (0, 0)
    error: str | None = None
    result: dict[str, Any] | None = None
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    @property
    def case_id(self) -> str:
        """The case's id, known from the upload (a raw case's before it is prepared)."""
        return self.case.case_id if self.case is not None else self.raw.case_id if self.raw else ""

    def describe(self, position: int | None) -> dict[str, Any]:
        """The job as the page sees it (``position``: jobs ahead of it, running or waiting; ``None`` once it runs)."""
        return {"id": self.id, "case_id": self.case_id, "state": self.state.value, "stage": self.stage,
                "prepare": self.raw is not None,
                "tiles_done": self.tiles[0], "tiles_total": self.tiles[1], "position": position,
                "error": self.error, "result": self.result, "inputs": self.inputs,
                "seconds_waiting": round((self.started or time.time()) - self.submitted, 3),
                "seconds_running": round((self.finished or time.time()) - self.started, 3) if self.started else None}


class JobQueue:
    """Jobs in line for ``workers`` threads, each running ``run(job, progress)``.

    Args:
        run: segments a job and returns its result; whatever it raises fails that job alone.
        workers: jobs run at once.
        expire_seconds: a finished job is deleted this long after it ends.
    """

    def __init__(self, run: Callable[[Job, Progress], dict[str, Any]], workers: int, expire_seconds: float) -> None:
        self._run = run
        self._expire = expire_seconds
        self._jobs: dict[str, Job] = {}
        self._waiting: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, name=f"bratsx-job-{i}", daemon=True)
                         for i in range(workers)]
        self._threads.append(threading.Thread(target=self._sweep, name="bratsx-expiry", daemon=True))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop taking jobs; a running job finishes first."""
        self._stop.set()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            if thread.ident is not None:  # started
                thread.join()

    def submit(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
            self._waiting.append(job.id)
        self._queue.put(job.id)

    def describe(self, job_id: str) -> dict[str, Any]:
        """What the page shows of a job.

        Raises:
            KeyError: no such job (never was, or expired).
        """
        with self._lock:
            job = self._jobs[job_id]
            running = sum(j.state is JobState.RUNNING for j in self._jobs.values())
            position = running + self._waiting.index(job_id) if job_id in self._waiting else None
            return job.describe(position)

    def waiting(self) -> int:
        """How many jobs wait to start (the server bounds it: ``--max-queued-jobs``)."""
        with self._lock:
            return len(self._waiting)

    def ids(self) -> list[str]:
        """The ids of every job not yet expired, oldest first (the page's case list)."""
        with self._lock:
            return list(self._jobs)

    def get(self, job_id: str) -> Job:
        """A job (:class:`KeyError` when unknown or expired)."""
        with self._lock:
            return self._jobs[job_id]

    def _work(self) -> None:
        while (job_id := self._queue.get()) is not None:
            with self._lock:
                self._waiting.remove(job_id)
                job = self._jobs.get(job_id)
                if job is None:
                    continue
                job.state, job.started, job.stage = JobState.RUNNING, time.time(), "loading"

            def progress(stage: str, done: int, total: int, job: Job = job) -> None:
                job.stage, job.tiles = stage, (done, total)

            try:
                job.result = self._run(job, progress)
                job.state = JobState.DONE
            except Exception as error:  # one job's failure, whatever raised it, must not stop the queue
                expected = isinstance(error, BratsxError)
                job.error = failure_text(error, job.case_id)
                job.state = JobState.FAILED
                logger.info("job %s failed: %s", job.id, job.error, exc_info=not expected)
            job.finished, job.stage = time.time(), ""

    def expire(self, now: float | None = None) -> list[str]:
        """Delete the jobs that ended more than ``expire_seconds`` ago; returns their ids."""
        now = time.time() if now is None else now
        with self._lock:
            old = [j for j in self._jobs.values() if j.finished is not None and now - j.finished >= self._expire]
            for job in old:
                del self._jobs[job.id]
        for job in old:
            shutil.rmtree(job.folder, ignore_errors=True)
        return [job.id for job in old]

    def _sweep(self) -> None:
        while not self._stop.wait(min(60.0, max(self._expire / 4, 0.05))):
            self.expire()
