"""One batch runner for every door: :func:`run_batch` plans, schedules, accounts for and summarises a run.

``bratsx infer`` (threads, ``--workers``, ``--devices``, ``--ray``), the web app's jobs (a batch of one),
the demo and the bench all call :func:`run_batch` with a :class:`~bratsx.runtime.runner.Runner` and a
scheduler. The batch owns what must be the same whoever runs the cases:

- planning (:func:`plan_run`): the output folder checked, stale temporaries removed, the records already
  there read, and each case reused, skipped or (re)done;
- accounting: every case of the batch ends with a record, a case its scheduler never finished included;
- result order (the batch's), the summary (``metrics.csv``, ``summary.json``) and parts (``--num-parts``).

A scheduler only runs the cases it is given, through the same per-case pieces
(:mod:`bratsx.runtime.infer`), with one signature (:class:`Scheduler`): :class:`Threads` here,
:class:`~bratsx.runtime.parallel.Processes` and :class:`~bratsx.runtime.ray_runner.Ray` beside it. So
outputs are byte-identical whichever scheduler ran them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..atomic import remove_stale_temporaries
from ..cases import Case
from ..errors import BratsxError
from .infer import CaseOutput, InferOptions, check_output_folder, output_path, run_pipeline, write_one
from .parts import Part
from .records import RECORDS_DIR, CaseRecord, CaseStatus, input_fingerprint, read_records, record_path
from .runner import Runner
from .summary import describe_run, write_summary

__all__ = ["BatchResult", "RunPlan", "Scheduler", "Threads", "Work", "account_for", "plan_run", "run_batch"]

logger = logging.getLogger(__name__)

#: Called with each record as soon as its case is done (reused and skipped cases first).
OnCase = Callable[[CaseRecord], None]
#: Called with ``(case_id, tiles done, tiles in all)`` while a case runs (where the scheduler can tell).
OnTiles = Callable[[str, int, int], None]


@dataclass
class RunPlan:
    """What a run of a directory has to do, decided before any work.

    Attributes:
        cases: every case of the batch, in order (with ``references`` applied).
        identity: ``{"model": ..., "settings": ...}`` as every record of the run says it.
        done: records of the cases left as they are (``reused`` or ``skipped``), by case id.
        todo: the cases to segment, each with the note its record gets (``stale: ...``, ``overwritten``).
    """

    cases: list[Case]
    identity: dict[str, Any]
    done: dict[str, CaseRecord]
    todo: list[tuple[Case, str | None]]


@dataclass(frozen=True)
class Work:
    """What a scheduler is given beside the cases and the runner: where and how to write, whom to tell.

    Attributes:
        out_dir: the output folder (checked by :func:`plan_run`).
        options: how to run.
        identity: ``{"model": ..., "settings": ...}`` for the records (a worker adds its device).
        on_record: called in the calling process with each record once written.
        on_tiles: called in the calling process with ``(case_id, tiles done, tiles in all)``.
    """

    out_dir: Path
    options: InferOptions
    identity: dict[str, Any]
    on_record: OnCase
    on_tiles: OnTiles | None = None


class Scheduler(Protocol):
    """Runs cases: the one thing every way of running them (threads, processes, Ray) does.

    ``run`` segments and writes each case of ``todo`` with ``runner`` (its models open in this process, or
    its :attr:`~bratsx.runtime.runner.Runner.spec` opened where the work runs), calls ``work.on_record``
    with each record written, and returns, for the cases it could not finish, why (the batch records them
    as failed). ``threads`` is the whole run's CPU threads (``None``: every core), split between workers.

    Attributes:
        description: how it runs, for people (``one process``, ``2 worker processes``, ``Ray (local)``).
    """

    description: str

    def run(self, todo: Sequence[tuple[Case, str | None]], runner: Runner, work: Work) -> dict[str, str]: ...


@dataclass(frozen=True)
class Threads:
    """This process: the runner's open models, with the next case loading and the last one writing meanwhile."""

    description: str = "one process"

    def run(self, todo: Sequence[tuple[Case, str | None]], runner: Runner, work: Work) -> dict[str, str]:
        runner.require_open()
        run_pipeline(todo, runner, work.out_dir, work.options, work.identity, work.on_record, work.on_tiles)
        return {}


@dataclass(frozen=True)
class BatchResult:
    """What a batch did.

    Attributes:
        records: one per case of the batch (of the part, with ``part``), in order.
        summary: the ``summary.json`` written (``metrics.csv`` beside it); ``None`` when it could not be.
        wall_seconds: how long the run took.
        part: the part run, if any.
        summary_error: why the summary could not be written (a full disk), in one line; every case's record
            is still returned, so a caller shows each case's outcome before this line.
    """

    records: list[CaseRecord]
    summary: Path | None
    wall_seconds: float
    part: Part | None = None
    summary_error: str | None = None

    @property
    def failed(self) -> bool:
        """Whether any case failed."""
        return any(r.status == CaseStatus.FAILED for r in self.records)


def _reusable(record: CaseRecord | None, case: Case, identity: dict[str, Any], out_dir: Path) -> str | None:
    """Why an existing output must be redone (``None``: it is up to date and can be reused)."""
    if record is None or record.status != CaseStatus.OK:
        return "no record of a finished run"
    if not output_path(out_dir, case.case_id).is_file():
        return "output missing"
    if record.inputs != input_fingerprint(case):
        return "input changed"
    if record.model.get("sha256") != identity["model"].get("sha256"):
        return "model changed"
    if record.settings != identity["settings"]:
        return "settings changed"
    return None


def _settings(runner: Runner, options: InferOptions) -> dict[str, Any]:
    """The options that change an output, as recorded (and compared on a rerun)."""
    return {**runner.settings(), "save_probabilities": options.save_probabilities}


def plan_run(
    cases: Sequence[Case],
    out_dir: Path,
    runner: Runner,
    options: InferOptions,
    references: dict[str, Path] | None = None,
) -> RunPlan:
    """Check the output folder and decide, from the records already there, which cases to (re)do.

    Args:
        cases: the batch.
        out_dir: output folder (created).
        runner: the model(s) and settings the records are compared with.
        options: how to run (``overwrite`` redoes up-to-date cases).
        references: reference label files by case id, overriding the cases' own.

    Returns:
        The plan: reused and skipped cases' records, and the cases to segment.

    Raises:
        BratsxError: the output folder cannot be used (see :func:`~bratsx.runtime.infer.check_output_folder`).
    """
    if references:
        cases = [dataclasses.replace(c, label=references.get(c.case_id, c.label)) for c in cases]
    check_output_folder(cases, out_dir)
    for folder in (out_dir, out_dir / RECORDS_DIR):
        for removed in remove_stale_temporaries(folder):
            logger.info("removed %s, left by an interrupted write", removed)
    identity = {"model": runner.identity, "settings": _settings(runner, options)}
    earlier = read_records(out_dir)
    done: dict[str, CaseRecord] = {}
    todo: list[tuple[Case, str | None]] = []
    for case in cases:
        exists = output_path(out_dir, case.case_id).is_file()
        reason = _reusable(earlier.get(case.case_id), case, identity, out_dir) if exists else None
        if exists and not options.overwrite and reason is None:
            done[case.case_id] = dataclasses.replace(earlier[case.case_id], note="reused")
        elif exists and not options.overwrite and earlier.get(case.case_id) is None:
            done[case.case_id] = CaseRecord(case.case_id, CaseStatus.SKIPPED,
                                            output=output_path(out_dir, case.case_id).name,
                                            note="output exists but no record describes it; --overwrite redoes it")
        else:
            todo.append((case, f"stale: {reason}" if exists and reason else "overwritten" if exists else None))
    return RunPlan(list(cases), identity, done, todo)


def account_for(out_dir: Path, case_id: str, since_ns: int, why: str) -> CaseRecord:
    """The record of a case whose result never reached the batch (its worker, task or scheduler died).

    If the case was finished anyway (its ``ok`` record was written in this run, after ``since_ns``),
    that record; else a ``failed`` record saying ``why``, written so that the case is accounted for
    and a rerun redoes it.
    """
    path = record_path(out_dir, case_id)
    try:
        record = CaseRecord.from_json(path.read_text()) if path.stat().st_mtime_ns >= since_ns else None
    except (OSError, ValueError, TypeError):
        record = None
    if record is not None and record.status == CaseStatus.OK:
        return record
    return write_one(CaseOutput(CaseRecord(case_id, CaseStatus.FAILED,
                                           error=f"case {case_id}: {why}; run again to redo it")), out_dir)


def run_batch(
    cases: Sequence[Case],
    runner: Runner,
    out_dir: Path,
    options: InferOptions | None = None,
    *,
    scheduler: Scheduler | None = None,
    part: Part | None = None,
    references: dict[str, Path] | None = None,
    on_case: OnCase | None = None,
    on_tiles: OnTiles | None = None,
) -> BatchResult:
    """Segment every case into ``out_dir`` with ``runner``, record each, and write the summary.

    Args:
        cases: from :func:`bratsx.cases.discover_cases`.
        runner: the model(s), their contract and how to segment (:class:`~bratsx.runtime.runner.Runner`);
            open in this process for :class:`Threads`, or described by its ``spec`` for processes and Ray.
        out_dir: output folder (created).
        options: how to run (``overwrite``, ``save_probabilities``).
        scheduler: who runs the cases (default :class:`Threads`).
        part: run only this part of the sorted cases (``--num-parts/--part-id``); its summary goes to
            ``out_dir/parts/<i>-of-<n>``, to be merged by :func:`~bratsx.runtime.parts.rebuild_summary`.
        references: reference label files by case id, overriding the cases' own.
        on_case: called with each record as soon as the case is done.
        on_tiles: called with ``(case_id, tiles done, tiles in all)`` while a case runs.

    Returns:
        One record per case, in order (reused, redone, new or failed), the summary written and the wall time.

    Raises:
        BratsxError: the output folder cannot be used, or the scheduler could not run at all (e.g. no
            worker could open the model).
        KeyboardInterrupt: Ctrl-C; what was segmented is written, nothing partial is left.
    """
    options = options or InferOptions()
    scheduler = scheduler or Threads()
    started = time.perf_counter()
    if part is not None:
        cases = part.select(cases)
    plan = plan_run(cases, out_dir, runner, options, references)
    records: dict[str, CaseRecord] = {}

    def finished(record: CaseRecord) -> None:
        records[record.case_id] = record
        if on_case:
            on_case(record)

    for record in plan.done.values():
        finished(record)
    if plan.todo:
        since_ns = time.time_ns()
        unfinished = scheduler.run(plan.todo, runner, Work(out_dir, options, plan.identity, finished, on_tiles))
        for case, _ in plan.todo:
            if case.case_id not in records:
                why = unfinished.get(case.case_id, "its scheduler ended without a result")
                finished(account_for(out_dir, case.case_id, since_ns, why))
    ordered = [records[case.case_id] for case in plan.cases]
    wall = time.perf_counter() - started
    summary_dir = out_dir / part.folder if part is not None else out_dir
    summary_dir.mkdir(parents=True, exist_ok=True)
    try:
        summary = write_summary(ordered, summary_dir, describe_run(plan.identity), wall)
    except BratsxError as error:
        return BatchResult(ordered, None, wall, part, str(error))
    return BatchResult(ordered, summary, wall, part)
