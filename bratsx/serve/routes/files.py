"""The page, its static files, the volumes the viewer loads and the downloads.

Every file is chosen by the server from a job id or a case id and a role, never from a path in the
request: a job's files are those its folder holds under the server's names, a reviewed case's are
those discovery and the run's records name (checked to lie inside the review's folders).
"""

from __future__ import annotations

from importlib.resources import files as package_files
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse

from ...labels import Modality
from ..jobs import Job, JobState
from ..presentation import (
    DICOM_SEG_NAME,
    NATIVE_NAME,
    OVERLAY_NAME,
    RESULT_NAME,
    SEGMENTATION_NAME,
    output_file,
    sequence_frames,
)
from ..review import REFERENCE_ROLE
from ..state import AppState
from ..uploads import LABEL_ROLE
from .common import app_state
from .jobs import find_job

__all__ = ["STATIC_DIR", "router"]

router = APIRouter(tags=["viewer"])
#: The page's HTML, JavaScript, CSS and the vendored NiiVue.
STATIC_DIR = Path(str(package_files("bratsx.serve") / "static"))
#: Downloads: the file of each, its name (from the case id) and type.
_DOWNLOADS = {
    "segmentation": (SEGMENTATION_NAME, "{id}.nii.gz", "application/gzip"),
    "result": (RESULT_NAME, "{id}_result.json", "application/json"),
    "overlay": (OVERLAY_NAME, "{id}_overlay.png", "image/png"),
    "native": (NATIVE_NAME, "{id}_native.zip", "application/zip"),
    "dicom-seg": (DICOM_SEG_NAME, "{id}_seg.dcm", "application/dicom"),
}
_NOT_FOUND = "no such file"


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    """The app's single page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


def _finished(job: Job) -> None:
    if job.state is not JobState.DONE:
        raise HTTPException(409, f"the job is {job.state.value}; its files come when it is done")


@router.get("/api/jobs/{job_id}/volumes/{role}")
def job_volume(job: Annotated[Job, Depends(find_job)], role: str) -> FileResponse:
    """A job's sequence (``flair``, ``t1``, ``t1ce``, ``t2``) or, once done, its segmentation (``seg``)."""
    if role == LABEL_ROLE:
        _finished(job)
        path = output_file(job.folder, job.case_id, SEGMENTATION_NAME)
    elif role in sequence_frames(job.case):
        path = job.case.images[Modality(role)]
    else:
        raise HTTPException(404, _NOT_FOUND)
    if not path.is_file():
        raise HTTPException(404, "the job's files were deleted (expired)")
    return FileResponse(path, media_type="application/octet-stream")


@router.get("/api/jobs/{job_id}/download/{what}")
def download(job: Annotated[Job, Depends(find_job)], what: str) -> FileResponse:
    """A result to keep: ``segmentation`` (``<case>.nii.gz``), ``result`` (JSON) or ``overlay`` (PNG); for raw
    scans also ``native`` (a zip of the segmentation on every native grid, with the volumes) and ``dicom-seg``."""
    if what not in _DOWNLOADS:
        raise HTTPException(404, _NOT_FOUND)
    _finished(job)
    name, filename, media_type = _DOWNLOADS[what]
    path = output_file(job.folder, job.case_id, name)
    if not path.is_file():
        raise HTTPException(404, f"this job has no {what} file")
    return FileResponse(path, media_type=media_type, filename=filename.format(id=job.case_id))


@router.get("/api/review/cases/{case_id}/volumes/{role}")
def review_volume(state: Annotated[AppState, Depends(app_state)], case_id: str, role: str) -> FileResponse:
    """A reviewed case's sequence, prediction (``seg``) or reference, only from inside the review's folders."""
    if state.review is None:
        raise HTTPException(404, "this server reviews no batch")
    try:
        if role not in (LABEL_ROLE, REFERENCE_ROLE):
            Modality(role)
        path = state.review.file(case_id, role)
    except (KeyError, ValueError):
        raise HTTPException(404, _NOT_FOUND) from None
    return FileResponse(path, media_type="application/octet-stream")
