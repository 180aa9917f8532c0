"""``metrics.csv`` and ``summary.json``: what a directory run measured, for people and for scripts.

Both are derived from the per-case records only (:mod:`bratsx.runtime.records`), so they say the
same after a resume, a sharded run or a merge as after one uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_bytes_atomic
from ..errors import BratsxError
from .records import CaseRecord, CaseStatus
from .segment import STAGES

__all__ = ["aggregate", "describe_run", "write_summary"]


def aggregate(records: Sequence[CaseRecord]) -> dict[str, dict[str, float]]:
    """Mean, std and median of every metric over the cases that have metrics."""
    rows = [r.metrics for r in records if r.metrics]
    if not rows:
        return {}
    keys = sorted({key for row in rows for key in row})
    stats = {}
    for key in keys:
        values = [row[key] for row in rows if key in row]
        stats[key] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                      "median": float(np.median(values)), "cases": len(values)}
    return stats


def describe_run(identity: dict[str, Any]) -> dict[str, Any]:
    """What ``summary.json`` says about how a run ran: the one spelling of every writer (infer, serve, demo,
    bench, summarize).

    Args:
        identity: ``{"model": ..., "settings": ...}`` as the records say it (see
            :func:`~bratsx.runtime.batch.plan_run`); merged runs give lists of distinct values.
    """
    return {"model": identity.get("model", {}), "settings": identity.get("settings", {})}


def write_summary(records: Sequence[CaseRecord], out_dir: Path, run: dict[str, Any], wall_seconds: float) -> Path:
    """Write ``metrics.csv`` (one row per case) and ``summary.json``; returns the JSON's path.

    Raises:
        BratsxError: either file cannot be written (a full disk), in one line.

    Args:
        records: one per case of the batch (reused, redone and new alike).
        out_dir: where both files go.
        run: what describes the run (see :func:`describe_run`), copied into the summary.
        wall_seconds: wall time of this invocation (throughput counts the cases it segmented).
    """
    metric_keys = sorted({k for r in records if r.metrics for k in r.metrics})
    buffer = io.StringIO()
    table = csv.writer(buffer)
    table.writerow(["case_id", "status", *metric_keys, *(f"{stage}_s" for stage in STAGES), "error"])
    for r in records:
        table.writerow([r.case_id, r.status, *((r.metrics or {}).get(k, "") for k in metric_keys),
                        *(round(r.seconds[s], 4) if s in r.seconds else "" for s in STAGES),
                        r.error or r.metrics_error or ""])
    _write(out_dir / "metrics.csv", buffer.getvalue().encode())

    ok = [r for r in records if r.status == CaseStatus.OK]
    segmented_now = [r for r in ok if r.note != "reused"]
    latency = {stage: float(np.mean([r.seconds.get(stage, 0.0) for r in ok])) if ok else 0.0 for stage in STAGES}
    statuses = sorted({r.status.value for r in records})
    summary = {
        **run,
        "cases": len(records),
        "by_status": {status: sum(r.status == status for r in records) for status in statuses},
        "failed": [{"case_id": r.case_id, "error": r.error} for r in records if r.status == CaseStatus.FAILED],
        "not_scored": [{"case_id": r.case_id, "status": r.status, "error": r.error or r.metrics_error}
                       for r in records if r.status not in (CaseStatus.OK, CaseStatus.FAILED) or r.metrics_error],
        "wall_seconds": wall_seconds,
        "segmented_this_run": len(segmented_now),
        "cases_per_minute": 60.0 * len(segmented_now) / wall_seconds if wall_seconds and segmented_now else None,
        "mean_seconds_per_stage": latency,
        "per_case_seconds": {r.case_id: r.seconds for r in ok},
        "metrics": aggregate(records),
    }
    path = out_dir / "summary.json"
    _write(path, (json.dumps(summary, indent=2) + "\n").encode())
    return path


def _write(path: Path, data: bytes) -> None:
    """Write atomically; a failure (a full disk) is one line naming the file, never a partial file.

    Raises:
        BratsxError: the file cannot be written.
    """
    try:
        write_bytes_atomic(path, data)
    except OSError as error:
        raise BratsxError(f"{path}: cannot write it ({error.strerror or error}); the per-case records beside it "
                          "are complete, and bratsx summarize rebuilds it once there is room") from None
