"""What a job does: a batch of one through :func:`~bratsx.runtime.batch.run_batch`, into the job's folder.

A job's folder ends up holding, beside the upload, exactly what ``bratsx infer`` writes for one case::

    out/<case_id>.nii.gz            labels in the input's own geometry
    out/records/<case_id>.json      the case's record (a CaseRecord: timings, volumes, metrics)
    out/metrics.csv, summary.json   the batch's summary
    out/pictures/overlay.png        the report's overlay picture, drawn from the labels in memory
                                    (when Pillow, the ``report`` extra, is installed)

The job runs on :class:`InThisThread`, a scheduler that segments the case in the job's own thread and
keeps its labels, so the overlay is drawn without reading the segmentation back from disk. What the
page shows is built from the record by :mod:`~bratsx.serve.presentation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..cases import Case
from ..errors import BratsxError
from ..runtime.batch import Work, run_batch
from ..runtime.infer import CaseOutput, InferOptions, prepare_or_error, segment_one, write_one
from ..runtime.records import CaseRecord, CaseStatus
from ..runtime.runner import Runner
from .jobs import Job, Progress

__all__ = ["OUTPUT_FOLDER", "InThisThread", "JobOutcome", "job_output", "run_job"]

OUTPUT_FOLDER = "out"


@dataclass(frozen=True)
class JobOutcome:
    """A finished job: its case's record and, when it was segmented, the output kept in memory.

    Attributes:
        record: the case's record, as written beside the segmentation.
        output: the labels (canonical), geometry and label convention (``None`` for a reused or failed case).
    """

    record: CaseRecord
    output: CaseOutput | None


class InThisThread:
    """A scheduler for a batch of one in the calling thread, keeping each case's output (labels) in memory.

    Args:
        progress: told the stage (``loading``, ``inference``, ``writing``) and the tiles done.
    """

    description = "the job's thread"

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.outputs: dict[str, CaseOutput] = {}

    def run(self, todo: Sequence[tuple[Case, str | None]], runner: Runner, work: Work) -> dict[str, str]:
        runner.require_open()
        for case, note in todo:
            self.progress("loading", 0, 0)
            prepared = prepare_or_error(case, runner)
            output = segment_one(case, prepared, note, runner, work.options, work.identity,
                                 lambda _, done, total: self.progress("inference", done, total))
            self.progress("writing", 0, 0)
            work.on_record(write_one(output, work.out_dir))
            self.outputs[case.case_id] = output
        return {}


def job_output(job_folder: Path) -> Path:
    """A job's output folder (as ``bratsx infer --out``)."""
    return job_folder / OUTPUT_FOLDER


def run_job(job: Job, runner: Runner, progress: Progress) -> JobOutcome:
    """Segment a job's case with ``runner`` into its folder (see the module docstring).

    Args:
        job: the job (its case, folder and segmentation options, which replace the runner's).
        runner: the open model(s) and how to segment; used by this job alone while it runs (see
            :class:`~bratsx.runtime.backends.Backend` on thread safety).
        progress: told the stage and the tiles done.

    Returns:
        The record and the output in memory.

    Raises:
        CaseError, BratsxError: the case failed (the job fails with its one-line message).
    """
    scheduler = InThisThread(progress)
    result = run_batch([job.case], runner.with_options(job.options), job_output(job.folder),
                       InferOptions(overwrite=True), scheduler=scheduler)
    [record] = result.records
    if record.status != CaseStatus.OK:
        raise BratsxError(record.error or f"case {record.case_id}: {record.status}")
    return JobOutcome(record, scheduler.outputs.get(record.case_id))
