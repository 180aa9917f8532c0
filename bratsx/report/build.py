"""Building a report: gather the batch, draw every case in worker processes, flag, write ``report.html``.

:func:`build_batch_report` serves ``bratsx report PRED_DIR`` (and can serve ``bratsx infer
--report``); :func:`build_run_report` serves ``bratsx report RUN_DIR`` for a training run.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import multiprocessing
import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import nibabel
import numpy as np
import PIL

from .. import __version__
from ..atomic import write_bytes_atomic
from ..contract import ModelContract, read_onnx_contract
from ..errors import BratsxError
from ..modelfolder import find_model_folder
from .chart import run_curves
from .collect import FAILED, CaseEntry, collect_batch, read_summary
from .flags import Evidence, FlagOptions, compute_flags
from .html import ReportRow, batch_report_html, run_report_html
from .options import RenderOptions
from .prepared import prepare_html
from .qc import read_qc
from .render import CaseImages, png_bytes, render_case

__all__ = ["REPORT_NAME", "ReportOptions", "ReportResult", "build_batch_report", "build_run_report",
           "default_jobs", "is_run_dir"]

REPORT_NAME = "report.html"
CASES_FOLDER = "cases"
RUN_METRICS = "metrics.jsonl"
CURVES_NAME = "curves.png"


def default_jobs() -> int:
    """Worker processes for drawing: the usable cores, at most 8."""
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


@dataclass(frozen=True, kw_only=True)
class ReportOptions:
    """How to build a batch report.

    Attributes:
        render: how to draw the cases.
        flags: thresholds of the QC flags.
        jobs: worker processes drawing cases (1: draw in this process).
        qc: a ``qc.csv`` exported by an earlier report, whose verdicts the new one shows.
        command: the command line that built the report, shown in its header.
    """

    render: RenderOptions = field(default_factory=RenderOptions)
    flags: FlagOptions = field(default_factory=FlagOptions)
    jobs: int = 1
    qc: Path | None = None
    command: str | None = None


@dataclass(frozen=True)
class ReportResult:
    """What building a report did.

    Attributes:
        html: the report file.
        rows: every case with its pictures and flags.
        seconds: wall time of the whole build.
    """

    html: Path
    rows: list[ReportRow]
    seconds: float

    @property
    def picture_errors(self) -> list[tuple[str, str]]:
        """(case id, error) of each case that could not be drawn."""
        return [(r.entry.case_id, r.images.error) for r in self.rows if r.images is not None and r.images.error]


def case_folder_name(case_id: str) -> str:
    """A safe folder name for a case's pictures (the id itself when it is one; a hash tells altered ids apart)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", case_id).strip(".") or "_"
    if safe != case_id:
        safe += "-" + hashlib.sha256(case_id.encode()).hexdigest()[:8]
    return safe


def _worker_context() -> multiprocessing.context.BaseContext:
    """How drawing workers start: from a clean server process (forkserver, else spawn), never by fork.

    A forked child would inherit this process's threads' locks (a progress display's, for one).
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _render_all(entries: Sequence[CaseEntry], pictures: Path, options: ReportOptions,
                on_case: Callable[[CaseImages], None] | None) -> dict[str, CaseImages]:
    """Draw every case, in worker processes when ``options.jobs > 1``; a crash in one case becomes its error."""
    draw = partial(render_case, options=options.render)
    images: dict[str, CaseImages] = {}

    def done(case_id: str, result: CaseImages) -> None:
        images[case_id] = result
        if on_case:
            on_case(result)

    jobs = [(e.case_id, e.case, e.prediction, pictures / case_folder_name(e.case_id)) for e in entries]
    if options.jobs <= 1 or len(jobs) <= 1:
        for job in jobs:
            done(job[0], _guarded(job[0], partial(draw, *job)))
        return images
    with ProcessPoolExecutor(max_workers=min(options.jobs, len(jobs)), mp_context=_worker_context()) as pool:
        futures: dict[Future, str] = {pool.submit(draw, *job): job[0] for job in jobs}
        for future in as_completed(futures):
            done(futures[future], _guarded(futures[future], future.result))
    return images


def _guarded(case_id: str, draw: Callable[[], CaseImages]) -> CaseImages:
    """A case's pictures, or an unexpected crash while drawing it as its error (the other cases go on)."""
    try:
        return draw()
    except Exception as error:  # whatever raised it, one case must not lose the others
        return CaseImages(case_id, error=f"case {case_id}: drawing failed ({type(error).__name__}: {error})")


def _evidence(row: ReportRow) -> Evidence:
    dice = {k.removeprefix("dice_"): v for k, v in row.entry.metrics.items() if k.startswith("dice_")}
    touches = row.images.touches_border if row.images is not None else None
    return Evidence(row.entry.case_id, row.entry.status == FAILED, row.volumes_ml, touches, dice)


def _describe_contract(contract: ModelContract) -> str:
    parts = [f"patch {'x'.join(map(str, contract.patch_size))}", contract.output_mode.value,
             f"trained with bratsx {contract.bratsx_version}"]
    if contract.validation_dice:
        parts.append("validation Dice " + ", ".join(f"{k} {v:.3f}" for k, v in contract.validation_dice.items()))
    if contract.checkpoint_sha256:
        parts.append(f"checkpoint sha256 {contract.checkpoint_sha256[:12]}")
    return "; ".join(parts)


def _describe_model(model: str) -> str:
    """A model path with what its contract says (from its model folder, else the ONNX metadata)."""
    path = Path(model)
    try:
        folder = find_model_folder(path) if path.exists() else None
        if folder is not None:
            return f"{model} ({_describe_contract(folder.contract)})"
        if path.suffix == ".onnx" and path.is_file():
            return f"{model} ({_describe_contract(read_onnx_contract(path))})"
    except (BratsxError, OSError, KeyError, TypeError, ValueError):
        return f"{model} (contract unreadable)"
    return model


def _versions() -> str:
    return (f"bratsx {__version__}, Python {platform.python_version()}, numpy {np.__version__}, "
            f"nibabel {nibabel.__version__}, Pillow {PIL.__version__}")


def _batch_facts(pred_dir: Path, cases_dir: Path | None, summary: dict[str, Any], command: str | None
                 ) -> list[tuple[str, str]]:
    """Header lines: the folders, the model and how it ran (from ``summary.json``), the commands, versions."""
    facts = [("predictions", str(pred_dir)), ("cases", str(cases_dir) if cases_dir else "not given")]
    model = summary.get("model") if isinstance(summary.get("model"), dict) else {}
    for path in model.get("files", []) if isinstance(model.get("files"), list) else []:
        facts.append(("model", _describe_model(str(path))))
    settings = summary.get("settings") if isinstance(summary.get("settings"), dict) else summary  # older: top level
    run = ", ".join(f"{k} {v}" for k, v in (*((k, model[k]) for k in ("backend", "device", "precision") if k in model),
                                            *((k, settings[k]) for k in ("overlap", "tta") if k in settings)))
    if run:
        facts.append(("inference", run))
    if isinstance(summary.get("command"), str):
        facts.append(("inference command", summary["command"]))
    if isinstance(summary.get("wall_seconds"), (int, float)) and summary["wall_seconds"]:
        speed = summary.get("cases_per_minute")
        facts.append(("inference time", f"{summary['wall_seconds']:.1f} s"
                      + (f", {speed:.1f} cases/min" if isinstance(speed, (int, float)) else "")))
    if command:
        facts.append(("report command", command))
    facts.append(("versions", _versions()))
    facts.append(("built", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")))
    return facts


def build_batch_report(
    pred_dir: Path,
    cases_dir: Path | None,
    out_dir: Path | None = None,
    options: ReportOptions = ReportOptions(),
    on_case: Callable[[CaseImages], None] | None = None,
) -> ReportResult:
    """The QC report of an inference folder: pictures per case, flags, ``report.html``.

    Args:
        pred_dir: a ``bratsx infer`` output folder.
        cases_dir: the cases it ran on (backgrounds and references); without it no picture is drawn. Cases
            prepared from raw scans (``OUT/prepared`` of ``bratsx infer --prepare``) also show their preparation.
        out_dir: where the report goes (default ``pred_dir/report``); pictures go to ``out_dir/cases/<id>/``.
        options: how to draw, flag and review.
        on_case: called as each case's pictures are done (for progress).

    Returns:
        The report file and its rows.

    Raises:
        BratsxError: nothing to report in ``pred_dir``, no case in ``cases_dir``, or an unreadable ``qc.csv``.
    """
    started = time.perf_counter()
    pred_dir = Path(pred_dir)
    out_dir = Path(out_dir) if out_dir is not None else pred_dir / "report"
    verdicts = read_qc(options.qc) if options.qc is not None else {}
    entries = collect_batch(pred_dir, cases_dir, (options.render.background.value,))
    out_dir.mkdir(parents=True, exist_ok=True)
    images = _render_all(entries, out_dir / CASES_FOLDER, options, on_case) if cases_dir is not None else {}
    rows = [ReportRow(e, images.get(e.case_id), prepare=prepare_html(e)) for e in entries]
    flags = compute_flags([_evidence(row) for row in rows], options.flags)
    rows = [replace(row, flags=tuple(flags[row.entry.case_id])) for row in rows]
    key = hashlib.sha256(str(pred_dir.resolve()).encode()).hexdigest()[:16]
    page = batch_report_html(rows, title=f"bratsx QC report: {pred_dir.resolve().name}",
                             facts=_batch_facts(pred_dir, cases_dir, read_summary(pred_dir), options.command),
                             storage_key=key, flag_options=options.flags, qc=verdicts)
    html = write_bytes_atomic(out_dir / REPORT_NAME, page.encode("utf-8"))
    return ReportResult(html, rows, time.perf_counter() - started)


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a training run folder (it holds ``metrics.jsonl``)."""
    return (Path(path) / RUN_METRICS).is_file()


def build_run_report(run_dir: Path, out_dir: Path | None = None, command: str | None = None) -> Path:
    """The report of a training run: loss and validation Dice curves, and a table per epoch.

    Args:
        run_dir: a ``bratsx train`` run folder.
        out_dir: where ``report.html`` and ``curves.png`` go (default ``run_dir/report``).
        command: the command line, shown in the header.

    Returns:
        The report file.

    Raises:
        BratsxError: no readable ``metrics.jsonl`` in ``run_dir``.
    """
    run_dir = Path(run_dir)
    path = run_dir / RUN_METRICS
    try:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as error:
        raise BratsxError(f"{path}: cannot read the run's metrics ({error})") from error
    records = [r for r in records if isinstance(r, dict)]
    if not records:
        raise BratsxError(f"{path}: no epoch recorded yet; build the report once an epoch has finished")
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = png_bytes(run_curves(records))
    write_bytes_atomic(out_dir / CURVES_NAME, curves)
    validated = [r for r in records if "val_dice_mean" in r]
    facts = [("run", str(run_dir)), ("epochs", str(len(records)))]
    if validated:
        best = max(validated, key=lambda r: r["val_dice_mean"])
        facts.append(("best validation", f"mean Dice {best['val_dice_mean']:.3f} at epoch {best.get('epoch')}"))
    if command:
        facts.append(("report command", command))
    facts.append(("versions", _versions()))
    page = run_report_html(f"bratsx training run: {run_dir.resolve().name}", records, curves, facts)
    return write_bytes_atomic(out_dir / REPORT_NAME, page.encode("utf-8"))
