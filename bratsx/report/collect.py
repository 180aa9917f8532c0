"""Gathering what a ``bratsx infer`` output folder says about each case, from whichever source it has.

Sources, the first one that knows a case wins:

1. the per-case records ``PRED_DIR/records/<case_id>.json`` (:mod:`bratsx.runtime.records`), the
   run's truth when present (an unreadable record is left out, and the next source speaks for it);
2. ``metrics.csv`` (status, metrics, seconds per stage, error) with the errors of ``summary.json``;
3. the prediction files ``<case_id>.nii.gz`` themselves.

Everything else in the report is built from the returned :class:`CaseEntry` list, so switching or
adding a source changes this module only.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..cases import Case, discover_cases, nifti_stem
from ..errors import BratsxError
from ..labels import BRATS_CHANNELS
from ..runtime.records import case_seconds, read_records

__all__ = ["FAILED", "CaseEntry", "collect_batch", "read_summary"]

#: Status of a case whose inference failed (other statuses: ``ok``, ``skipped``: an output no record describes).
FAILED = "failed"
_STAGE_SUFFIX = "_s"


@dataclass(frozen=True)
class CaseEntry:
    """One case of a batch as the report sees it.

    Attributes:
        case_id: the case.
        status: as the run recorded it: ``ok``, ``failed`` or ``skipped`` (an output no record describes).
        error: why it failed.
        prediction: the predicted label file, when it exists.
        seconds: the case's latency (all stages), when known.
        metrics: metrics against the reference (``dice_WT``, ``hd95_ET``, ``lesion_dice_TC``, ...).
        volumes_ml: predicted WT/TC/ET volumes (mL), when the source has them.
        case: the input case of the same id in the cases folder, when found.
    """

    case_id: str
    status: str
    error: str | None = None
    prediction: Path | None = None
    seconds: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    volumes_ml: Mapping[str, float] = field(default_factory=dict)
    case: Case | None = None


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _numbers(values: Mapping[str, Any] | None) -> dict[str, float]:
    return {str(k): v for k, v in ((k, _number(x)) for k, x in (values or {}).items()) if v is not None}


def _latency(seconds: Any) -> float | None:
    """A latency given as seconds or as seconds per stage (and part of a stage, not added again)."""
    if isinstance(seconds, Mapping):
        stages = _numbers(seconds)
        return case_seconds(stages) if stages else None
    return _number(seconds)


def _from_records(pred_dir: Path) -> dict[str, CaseEntry]:
    entries = {}
    for case_id, record in read_records(pred_dir).items():
        prediction = pred_dir / record.output if record.output else None
        entries[case_id] = CaseEntry(
            case_id, record.status, record.error or record.metrics_error,
            prediction if prediction is not None and prediction.is_file() else None,
            _latency(record.seconds), _numbers(record.metrics), _numbers(record.volumes_ml))
    return entries


def read_summary(pred_dir: Path) -> dict[str, Any]:
    """``summary.json`` of a run (empty when absent or unreadable: the report can do without it)."""
    try:
        summary = json.loads((pred_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _from_metrics_csv(pred_dir: Path) -> dict[str, CaseEntry]:
    path = pred_dir / "metrics.csv"
    if not path.is_file():
        return {}
    errors = {str(f.get("case_id")): f.get("error") for f in read_summary(pred_dir).get("failed", [])
              if isinstance(f, dict)}
    entries = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            case_id = row.pop("case_id", None)
            if not case_id:
                continue
            status, error = row.pop("status", None) or "ok", row.pop("error", None) or errors.get(case_id)
            stages = {k: v for k, v in row.items() if k.endswith(_STAGE_SUFFIX)}
            metrics = {k: v for k, v in row.items() if not k.endswith(_STAGE_SUFFIX)}
            entries[case_id] = CaseEntry(case_id, status, error, seconds=_latency(stages), metrics=_numbers(metrics))
    return entries


def _prediction_files(pred_dir: Path) -> dict[str, Path]:
    return {stem: path for path in sorted(pred_dir.iterdir())
            if path.is_file() and (stem := nifti_stem(path)) and not stem.endswith("_probabilities")}


def collect_batch(pred_dir: Path, cases_dir: Path | None = None,
                  channels: tuple[str, ...] = BRATS_CHANNELS) -> list[CaseEntry]:
    """Every case an inference output folder knows, with its input case when ``cases_dir`` has it.

    Args:
        pred_dir: a ``bratsx infer`` output folder.
        cases_dir: the cases it was run on (for the pictures' backgrounds and references).
        channels: the input channels the caller reads (a report, its background's alone: a case of a model that
            takes no FLAIR is drawn over another modality without one).

    Returns:
        One entry per case id, sorted as :func:`~bratsx.cases.discover_cases` sorts (unknown ids last).

    Raises:
        BratsxError: ``pred_dir`` is not a folder or holds no case at all.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise BratsxError(f"{pred_dir}: not a folder; give a bratsx infer output folder")
    files = _prediction_files(pred_dir)
    entries = {case_id: CaseEntry(case_id, "ok", prediction=path) for case_id, path in files.items()}
    entries.update(_from_metrics_csv(pred_dir))
    entries.update(_from_records(pred_dir))
    if not entries:
        raise BratsxError(f"{pred_dir}: no prediction, metrics.csv or records/ found; is it a bratsx infer output "
                          "folder?")
    found = discover_cases(cases_dir, channels=channels) if cases_dir is not None else []
    cases = {case.case_id: case for case in found}
    order = {case_id: i for i, case_id in enumerate(cases)}
    collected = [
        replace(entry, prediction=entry.prediction or (files.get(case_id) if entry.status != FAILED else None),
                case=cases.get(case_id))
        for case_id, entry in entries.items()
    ]
    return sorted(collected, key=lambda e: (order.get(e.case_id, len(order)), e.case_id))
