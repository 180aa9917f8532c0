"""``metrics.csv`` and ``summary.json``: what a directory run measured, for people and for scripts."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_bytes_atomic
from .infer import STAGES, CaseResult

__all__ = ["aggregate", "write_summary"]


def aggregate(results: Sequence[CaseResult]) -> dict[str, dict[str, float]]:
    """Mean, std and median of every metric over the cases that have metrics."""
    rows = [r.metrics for r in results if r.metrics]
    if not rows:
        return {}
    return {
        key: {
            "mean": float(np.mean([row[key] for row in rows])),
            "std": float(np.std([row[key] for row in rows])),
            "median": float(np.median([row[key] for row in rows])),
        }
        for key in rows[0]
    }


def write_summary(results: Sequence[CaseResult], out_dir: Path, run: dict[str, Any], wall_seconds: float) -> Path:
    """Write ``metrics.csv`` (one row per case) and ``summary.json``; returns the JSON's path."""
    predicted = [r for r in results if not r.skipped and r.error is None]
    metric_keys = sorted({k for r in results if r.metrics for k in r.metrics})
    buffer = io.StringIO()
    table = csv.writer(buffer)
    table.writerow(["case_id", "status", *metric_keys, *(f"{stage}_s" for stage in STAGES)])
    for r in results:
        status = "skipped" if r.skipped else "failed" if r.error else "ok"
        table.writerow([r.case_id, status, *((r.metrics or {}).get(k, "") for k in metric_keys),
                        *(round(r.seconds[s], 4) if s in r.seconds else "" for s in STAGES)])
    write_bytes_atomic(out_dir / "metrics.csv", buffer.getvalue().encode())

    latency = {stage: float(np.mean([r.seconds.get(stage, 0.0) for r in predicted])) if predicted else 0.0
               for stage in STAGES}
    summary = {
        **run,
        "cases": len(results),
        "predicted": len(predicted),
        "skipped": sum(r.skipped for r in results),
        "failed": [{"case_id": r.case_id, "error": r.error} for r in results if r.error],
        "wall_seconds": wall_seconds,
        "cases_per_minute": 60.0 * len(predicted) / wall_seconds if wall_seconds and predicted else 0.0,
        "mean_seconds_per_stage": latency,
        "per_case_seconds": {r.case_id: r.seconds for r in predicted},
        "metrics": aggregate(results),
    }
    path = out_dir / "summary.json"
    write_bytes_atomic(path, (json.dumps(summary, indent=2) + "\n").encode())
    return path
