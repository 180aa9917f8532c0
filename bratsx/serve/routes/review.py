"""Review mode: the batch's cases with their flags and verdicts, one case's viewer data, recording a verdict."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ...errors import BratsxError
from ..focus import tumour_focus_mm
from ..presentation import sequence_frames
from ..review import REFERENCE_ROLE, ReviewBatch
from ..state import AppState
from ..uploads import LABEL_ROLE
from .common import app_state

__all__ = ["router"]

router = APIRouter(prefix="/api/review", tags=["review"])
_NO_CASE = "no case of this id in the batch"


class VerdictIn(BaseModel):
    """A reviewer's verdict on one case."""

    verdict: str = Field("", description="pass, fail, or empty (not reviewed)")
    comment: str = Field("", max_length=10_000)
    reviewer: str = Field("", max_length=200)


def review_batch(state: Annotated[AppState, Depends(app_state)]) -> ReviewBatch:
    """The batch under review (404 outside review mode)."""
    if state.review is None:
        raise HTTPException(404, "this server reviews no batch (start it with --cases and --predictions)")
    return state.review


@router.get("/cases")
def cases(review: Annotated[ReviewBatch, Depends(review_batch)]) -> list[dict[str, Any]]:
    """Every case, in the report's order, with its flags, volumes, metrics and verdict."""
    return review.cases()


@router.get("/cases/{case_id}")
def case(review: Annotated[ReviewBatch, Depends(review_batch)], case_id: str) -> dict[str, Any]:
    """What the viewer needs for one case: its sequences, the prediction's label values and colours, where the
    tumour is, and whether a reference can be overlaid."""
    try:
        entry = review.entry(case_id)
    except KeyError:
        raise HTTPException(404, _NO_CASE) from None
    labels, labels_error, focus = None, None, None
    if entry.prediction is not None:
        try:
            labels = review.legend(case_id)
            focus = tumour_focus_mm(review.file(case_id, LABEL_ROLE), case_id)
        except (BratsxError, KeyError) as error:
            labels_error = str(error) if isinstance(error, BratsxError) else "the prediction lies outside the folders"
    reference = None
    if review.has_reference(case_id):
        try:
            reference = review.legend(case_id, REFERENCE_ROLE)
        except BratsxError as error:
            labels_error = labels_error or f"reference: {error}"
    return {"case_id": case_id, "sequences": sequence_frames(entry.case), "labels": labels,
            "labels_error": labels_error, "focus_mm": focus, "reference_labels": reference}


@router.post("/cases/{case_id}/verdict")
def verdict(review: Annotated[ReviewBatch, Depends(review_batch)], case_id: str, body: VerdictIn
            ) -> dict[str, str]:
    """Record a verdict into ``PREDICTIONS/qc.csv`` (atomically); answers the verdict as stored."""
    try:
        return review.record(case_id, body.verdict, body.comment, body.reviewer).to_dict()
    except KeyError:
        raise HTTPException(404, _NO_CASE) from None
    except BratsxError as error:
        raise HTTPException(422, str(error)) from None


@router.post("/cases/{case_id}/correction")
async def correction(review: Annotated[ReviewBatch, Depends(review_batch)], case_id: str, request: Request,
                     reviewer: str = "") -> dict[str, Any]:
    """Save the painted label map in the body (NIfTI bytes) as ``PREDICTIONS/corrected/<case>.nii.gz``, never over the
    prediction; answers its file and recomputed volumes (422 with one line when it does not fit the prediction)."""
    content = await request.body()
    try:
        saved = await run_in_threadpool(review.correct, case_id, content, reviewer[:200])
    except KeyError:
        raise HTTPException(404, "no prediction of this id in the batch to correct") from None
    except BratsxError as error:
        raise HTTPException(422, str(error)) from None
    return {"corrected": saved.path, "volumes_ml": saved.volumes_ml}
