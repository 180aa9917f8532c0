"""Review mode: the batch's cases with their flags and verdicts, one case's viewer data, recording a verdict."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from ...errors import BratsxError
from ..presentation import sequence_frames
from ..review import ReviewBatch
from ..state import AppState
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
    """What the viewer needs for one case: its sequences and the prediction's label values and colours."""
    try:
        entry = review.entry(case_id)
    except KeyError:
        raise HTTPException(404, _NO_CASE) from None
    labels, labels_error = None, None
    if entry.prediction is not None:
        try:
            labels = review.legend(case_id)
        except (BratsxError, KeyError) as error:
            labels_error = str(error) if isinstance(error, BratsxError) else "the prediction lies outside the folders"
    return {"case_id": case_id, "sequences": sequence_frames(entry.case), "labels": labels,
            "labels_error": labels_error}


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
