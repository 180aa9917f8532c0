"""Uploads and jobs: what the server offers, guessing sequences from names, submitting a case, the jobs, their
progress (pushed as server-sent events)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ...choices import look_up
from ...errors import BratsxError
from ...labels import LabelConvention
from ...runtime.segment import SegmentOptions
from ..events import EVENT_STREAM, job_events
from ..jobs import Job, JobQueue, RawUpload, new_job_folder
from ..presentation import sequence_frames
from ..state import AppState
from ..uploads import UploadedFile, case_from_zip, extract_zip, guess_role, raw_case_from_zip, stage_files
from .common import app_state

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["jobs"])
_JOB_ID = re.compile(r"[0-9a-f]{32}")
_UPLOAD_FOLDER = "upload"
_ZIP_NAME = "upload.zip"


class Names(BaseModel):
    """File names whose sequences to guess."""

    names: list[str]


@router.get("/info")
def info(state: Annotated[AppState, Depends(app_state)]) -> dict[str, Any]:
    """What this server does (segment, review), its model and limits."""
    return state.info()


@router.post("/roles")
def roles(body: Names) -> list[dict[str, str | None]]:
    """The sequence each file name suggests, as discovery reads names (the page preselects it)."""
    return [{"name": name, **guess_role(name)} for name in body.names[:64]]


def job_queue(state: Annotated[AppState, Depends(app_state)]) -> JobQueue:
    """The queue (404 when the server segments nothing)."""
    if state.queue is None:
        raise HTTPException(404, "this server has no model: it only reviews a batch")
    return state.queue


def find_job(job_id: str, queue: Annotated[JobQueue, Depends(job_queue)]) -> Job:
    """The job of an id (404 when unknown or expired)."""
    try:
        if not _JOB_ID.fullmatch(job_id):
            raise KeyError(job_id)
        return queue.get(job_id)
    except KeyError:
        raise HTTPException(404, "no such job: it never existed, or it expired and its files were deleted") from None


def _raw_upload(upload: Path, name: str, skull_strip: str) -> RawUpload:
    """An extracted zip of raw scans: the case to prepare (checked now: one case, its four sequences told apart)."""
    from ...prepare import PrepareOptions
    from ...prepare.skullstrip import SkullStripper

    stripper = look_up(SkullStripper, skull_strip, "skull stripping")
    return RawUpload(upload, raw_case_from_zip(upload, name), PrepareOptions(skull_strip=stripper.value))


def _upload(state: AppState, files: list[UploadFile], roles: list[str], convention: str, prepare: bool = False,
            skull_strip: str = "deepbet") -> Job:
    """Write the upload into a new job folder and find its case there (the folder is deleted on error).

    With ``prepare`` the upload is one ``.zip`` of raw scans (a DICOM study, or NIfTI files per sequence),
    prepared when the job runs (see :mod:`bratsx.serve.job`)."""
    settings = state.settings
    if not files:
        raise BratsxError("no file uploaded: choose the four sequences, or one .zip of the case folder")
    names = [f.filename or "unnamed" for f in files]
    if prepare and (len(files) != 1 or not names[0].lower().endswith(".zip")):
        raise BratsxError("to prepare raw scans, upload one .zip of the case (a DICOM study, or NIfTI files per "
                          "sequence)")
    if len(files) > settings.max_files:
        raise BratsxError(f"{len(files)} files uploaded, more than the {settings.max_files} this server takes at once "
                          "(its --max-files): upload one case, four sequences and optionally its reference")
    chosen = look_up(LabelConvention, convention, "label convention") if convention else None
    job_id, folder = new_job_folder(state.data_dir)
    raw = None
    try:
        upload = folder / _UPLOAD_FOLDER
        upload.mkdir()
        if len(files) == 1 and names[0].lower().endswith(".zip"):
            archive = folder / _ZIP_NAME
            with archive.open("xb") as target:
                shutil.copyfileobj(files[0].file, target, 1024 * 1024)
            members = settings.max_raw_zip_members if prepare else settings.max_zip_members
            extract_zip(archive, names[0], upload, members, settings.max_unzipped_bytes, nifti_only=not prepare)
            archive.unlink()
            if prepare:
                case, raw = None, _raw_upload(upload, names[0], skull_strip)
            else:
                case = case_from_zip(upload, names[0], settings.max_unzipped_bytes)
            implied, inputs = None, {"zip": names[0]}
        else:
            given = roles or [guess_role(n)["role"] or "" for n in names]
            if len(given) != len(files):
                raise BratsxError(f"{len(files)} files but {len(given)} sequence choices; choose one per file")
            uploaded = [UploadedFile(n, r, f.file) for n, r, f in zip(names, given, files)]
            case, implied = stage_files(uploaded, upload, settings.max_unzipped_bytes)
            inputs = {u.role: u.name for u in uploaded}
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Job(job_id, folder, case, SegmentOptions(convention=chosen or settings.labels or implied), inputs, raw)


@router.post("/jobs", status_code=201)
def submit(
    state: Annotated[AppState, Depends(app_state)],
    queue: Annotated[JobQueue, Depends(job_queue)],
    files: Annotated[list[UploadFile], File(description="Four NIfTI files (and optionally a reference), or one .zip")],
    roles: Annotated[list[str], Form(description="The sequence of each file: flair, t1, t1ce, t2 or seg")] = [],
    convention: Annotated[str, Form(description="Label values of the output (default: as the input's)")] = "",
    prepare: Annotated[bool, Form(description="The .zip holds raw scans (DICOM or NIfTI per sequence, "
                                              "unregistered, skull on): prepare them as bratsx infer --prepare "
                                              "does, and map the segmentation back to every native grid")] = False,
    skull_strip: Annotated[str, Form(description="With prepare: deepbet, or none for skull-stripped scans")]
    = "deepbet",
) -> dict[str, Any]:
    """Upload a case and queue it; answers the job (422 with the loader's one-line message when the upload is bad,
    429 when the queue is full)."""
    limit = state.settings.max_queued_jobs
    if queue.waiting() >= limit:
        raise HTTPException(429, f"{limit} jobs already wait to start, the most this server queues (its "
                                 "--max-queued-jobs): upload again when one has started")
    try:
        job = _upload(state, files, roles, convention, prepare, skull_strip)
    except BratsxError as error:
        raise HTTPException(422, str(error)) from None
    queue.submit(job)
    return _describe(queue, job)


@router.get("/jobs")
def listing(queue: Annotated[JobQueue, Depends(job_queue)]) -> list[dict[str, Any]]:
    """Every job not yet expired, oldest first (the page's case list)."""
    listed = []
    for job_id in queue.ids():
        try:
            listed.append(queue.describe(job_id))
        except KeyError:  # expired in between
            continue
    return listed


@router.get("/jobs/{job_id}/events")
def events(job: Annotated[Job, Depends(find_job)], queue: Annotated[JobQueue, Depends(job_queue)],
           request: Request) -> StreamingResponse:
    """The job's progress as server-sent events, until it is done or failed (see :mod:`bratsx.serve.events`)."""

    def read() -> dict[str, Any] | None:
        try:
            return _describe(queue, job)
        except KeyError:
            return None

    return StreamingResponse(job_events(read, request.is_disconnected), media_type=EVENT_STREAM,
                             headers={"X-Accel-Buffering": "no"})


@router.get("/jobs/{job_id}")
def status(job: Annotated[Job, Depends(find_job)], queue: Annotated[JobQueue, Depends(job_queue)]
           ) -> dict[str, Any]:
    """A job's state: queued (with its place in line), running (stage, tiles), done (result) or failed (message)."""
    try:
        return _describe(queue, job)
    except KeyError:
        raise HTTPException(404, "the job expired and its files were deleted") from None


def _describe(queue: JobQueue, job: Job) -> dict[str, Any]:
    """The job as the page sees it, with the sequences its viewer can show."""
    return {**queue.describe(job.id), "sequences": sequence_frames(job.case)}
