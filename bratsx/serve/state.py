"""The app's state, in one object: the settings, the open model, the job queue, the batch under review.

:meth:`AppState.open` does everything that can fail before the server listens (opening the model,
reading the batch), so ``bratsx serve`` reports a bad option as one line instead of starting a
server that cannot work.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import BratsxError
from ..runtime.models import OpenedModel, open_model
from .jobs import JOB_FOLDER, JobQueue
from .pipeline import model_description, segment_job
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


@dataclass
class AppState:
    """What the routes share.

    Attributes:
        settings: how the app runs.
        data_dir: where job folders go.
        model: the open model (``None``: review only).
        queue: the job queue (``None`` without a model).
        review: the batch under review (``None`` outside review mode).
        owns_data_dir: whether ``data_dir`` is a temporary folder to delete at exit.
    """

    settings: ServeSettings
    data_dir: Path
    model: OpenedModel | None
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
        try:
            if settings.data_dir is not None:
                settings.data_dir.mkdir(parents=True, exist_ok=True)
                remove_stale_jobs(settings.data_dir, settings.expire_seconds)
            data_dir = settings.data_dir or Path(tempfile.mkdtemp(prefix="bratsx-serve-"))
        except OSError as error:
            raise BratsxError(f"--data-dir {settings.data_dir}: cannot use it ({error.strerror or error})") from None
        model = open_model(settings.model, settings.backend, threads=settings.threads) if settings.model else None
        queue = None
        if model is not None:
            opened = model
            queue = JobQueue(lambda job, progress: segment_job(job, opened, progress), settings.jobs_per_model,
                             settings.expire_seconds)
        return cls(settings, data_dir, model, queue, review, settings.data_dir is None)

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
                "model": model_description(self.model) if self.model is not None else None,
                "max_upload_mb": settings.max_upload_mb, "max_files": settings.max_files,
                "max_queued_jobs": settings.max_queued_jobs, "expire_minutes": settings.expire_minutes}
