"""What a job does: a batch of one through :func:`~bratsx.runtime.batch.run_batch`, into the job's folder.

A job's folder ends up holding, beside the upload, exactly what ``bratsx infer`` writes for one case::

    out/<case_id>.nii.gz            labels in the input's own geometry
    out/records/<case_id>.json      the case's record (a CaseRecord: timings, volumes, metrics)
    out/metrics.csv, summary.json   the batch's summary
    out/pictures/overlay.png        the report's overlay picture, drawn from the labels in memory
                                    (when Pillow, the ``report`` extra, is installed)

A job of raw scans (``prepare`` ticked) runs ``bratsx infer --prepare``'s chain, with the same functions:
:func:`~bratsx.prepare.prepare_input` first writes the prepared case into ``out/prepared/<case_id>/``, which
is then segmented as any case, and :func:`~bratsx.prepare.batch.native_segmentations` maps the segmentation
back onto every native sequence grid (``out/native/``, a DICOM-SEG for DICOM inputs), all of which is also
zipped into ``out/native.zip`` for one download.

The job runs on :class:`InThisThread`, a scheduler that segments the case in the job's own thread and
keeps its labels, so the overlay is drawn without reading the segmentation back from disk. What the
page shows is built from the record by :mod:`~bratsx.serve.presentation`.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import atomic_path
from ..cases import Case, discover
from ..errors import BratsxError
from ..labels import LabelConvention
from ..runtime.batch import Work, run_batch
from ..runtime.infer import CaseOutput, InferOptions, prepare_or_error, segment_one, write_one
from ..runtime.records import CaseRecord, CaseStatus
from ..runtime.runner import Runner
from .jobs import Job, Progress, RawUpload

if TYPE_CHECKING:
    from ..prepare import NativeResult

__all__ = ["NATIVE_ZIP", "OUTPUT_FOLDER", "InThisThread", "JobOutcome", "job_output", "run_job"]

OUTPUT_FOLDER = "out"
#: The native-grid segmentations (and DICOM-SEG) of a prepared job, in one archive inside its output folder.
NATIVE_ZIP = "native.zip"


@dataclass(frozen=True)
class JobOutcome:
    """A finished job: its case's record and, when it was segmented, the output kept in memory.

    Attributes:
        record: the case's record, as written beside the segmentation.
        output: the labels (canonical), geometry and label convention (``None`` for a reused or failed case).
        prepared: a raw case's preparation record (``prepare/prepare.json``; ``None`` for a BraTS-ready upload).
        native: a raw case's segmentations on its native grids (``None`` for a BraTS-ready upload).
    """

    record: CaseRecord
    output: CaseOutput | None
    prepared: dict | None = None
    native: NativeResult | None = None


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


def _prepare(job: Job, raw: RawUpload) -> dict:
    """Prepare the job's raw case into ``out/prepared/`` and make the prepared case the job's; returns its record.

    Raises:
        CaseError, BratsxError: the case cannot be prepared (its one line).
    """
    from ..prepare import prepare_input
    from ..prepare.batch import PREPARED_FOLDER

    prepared = job_output(job.folder) / PREPARED_FOLDER
    [result] = [r for r in prepare_input(raw.folder, prepared, raw.options) if r.case_id == raw.case_id]
    if result.error:
        raise BratsxError(result.error)
    [job.case] = [c for c in discover(prepared).cases if c.case_id == raw.case_id]
    return result.record


def _native(job: Job, record: CaseRecord, convention: LabelConvention) -> NativeResult:
    """The segmentation back on every native grid (``out/native/``), zipped into ``out/native.zip``.

    Raises:
        BratsxError: the segmentation cannot be mapped back (its one line).
    """
    from ..prepare.batch import native_segmentations

    out = job_output(job.folder)
    native = native_segmentations([record], out, {record.case_id: convention})
    result = native[record.case_id]
    if isinstance(result, str):
        raise BratsxError(result)
    files = [*result.segmentations.values(), result.dicom_seg, result.volumes_file]
    with atomic_path(out / NATIVE_ZIP, suffix=".zip") as temporary, zipfile.ZipFile(temporary, "w") as archive:
        for path in filter(None, files):
            archive.write(path, path.name)  # stored under the server's own names
    return result


def run_job(job: Job, runner: Runner, progress: Progress) -> JobOutcome:
    """Segment a job's case with ``runner`` into its folder (see the module docstring).

    Args:
        job: the job (its case or raw scans, folder and segmentation options, which replace the runner's).
        runner: the open model(s) and how to segment; used by this job alone while it runs (see
            :class:`~bratsx.runtime.backends.Backend` on thread safety).
        progress: told the stage and the tiles done.

    Returns:
        The record and the output in memory.

    Raises:
        CaseError, BratsxError: the case failed (the job fails with its one-line message).
    """
    prepared = None
    if job.raw is not None:
        progress("preparing", 0, 0)
        prepared = _prepare(job, job.raw)
    scheduler = InThisThread(progress)
    result = run_batch([job.case], runner.with_options(job.options), job_output(job.folder),
                       InferOptions(overwrite=True), scheduler=scheduler)
    [record] = result.records
    if record.status != CaseStatus.OK:
        raise BratsxError(record.error or f"case {record.case_id}: {record.status}")
    output, native = scheduler.outputs.get(record.case_id), None
    if job.raw is not None:  # a raw case is always segmented here (overwrite), so its output is in memory
        progress("to native grids", 0, 0)
        native = _native(job, record, output.convention)
    return JobOutcome(record, output, prepared, native)
