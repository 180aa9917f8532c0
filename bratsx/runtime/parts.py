"""Splitting a batch into parts that run apart, and putting their records back together.

``--num-parts N --part-id I`` (as nnU-Net's ``-num_parts/-part_id``) lets users schedule parts themselves:
one SLURM array task, one machine or one GPU per part, all writing into one output folder on shared
storage or into one folder each. The split is round-robin over the sorted case ids, so it is
deterministic (every part computes the same split from the same folder), disjoint, complete and
balanced. :func:`merge_records` joins the records of several output folders, and :func:`missing_cases`
says which cases of the batch no part has finished, so a lost part is seen instead of silently missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cases import Case
from ..errors import BratsxError
from .records import CaseRecord, CaseStatus, read_records
from .summary import describe_run, write_summary

__all__ = ["MergedRecords", "Part", "RebuiltSummary", "merge_records", "missing_cases", "part_of", "rebuild_summary"]


def part_of(cases: Sequence[Case], num_parts: int, part_id: int) -> list[Case]:
    """The cases of part ``part_id`` of ``num_parts``: every ``num_parts``-th case id in sorted order.

    Args:
        cases: the whole batch.
        num_parts: how many parts the batch is split into (1 or more).
        part_id: which part, from 0 to ``num_parts - 1``.

    Returns:
        That part's cases, in sorted id order.

    Raises:
        BratsxError: ``num_parts`` below 1 or ``part_id`` outside ``0 .. num_parts - 1``.
    """
    if num_parts < 1:
        raise BratsxError(f"--num-parts {num_parts}: give 1 or more")
    if not 0 <= part_id < num_parts:
        raise BratsxError(f"--part-id {part_id}: must be between 0 and {num_parts - 1} for --num-parts {num_parts}")
    return sorted(cases, key=lambda case: case.case_id)[part_id::num_parts]


@dataclass(frozen=True)
class Part:
    """One part of a batch split ``--num-parts N --part-id I`` (checked when made).

    Attributes:
        num_parts: how many parts the batch is split into (1 or more).
        part_id: which part, from 0 to ``num_parts - 1``.
    """

    num_parts: int
    part_id: int

    def __post_init__(self) -> None:
        part_of([], self.num_parts, self.part_id)  # the one check of both numbers

    @property
    def folder(self) -> Path:
        """Where the part's summary goes in the output folder: ``parts/<i>-of-<n>``."""
        return Path("parts") / f"{self.part_id}-of-{self.num_parts}"

    def select(self, cases: Sequence[Case]) -> list[Case]:
        """This part's cases (see :func:`part_of`)."""
        return part_of(cases, self.num_parts, self.part_id)


@dataclass(frozen=True)
class MergedRecords:
    """The records of several output folders, one per case.

    Attributes:
        records: by case id, sorted; where folders disagree, the latest finished ``ok`` record wins
            (else the latest record).
        folders: which folder each kept record came from, by case id.
        duplicates: case ids recorded in more than one folder.
    """

    records: dict[str, CaseRecord]
    folders: dict[str, Path]
    duplicates: list[str]


def _rank(record: CaseRecord) -> tuple[bool, str]:
    return record.status == CaseStatus.OK, record.finished


def merge_records(out_dirs: Iterable[Path]) -> MergedRecords:
    """Join the records of ``out_dirs`` (see :mod:`bratsx.runtime.records`).

    Raises:
        BratsxError: a folder holds no records at all (not a bratsx output folder, or a typo).
    """
    records: dict[str, CaseRecord] = {}
    folders: dict[str, Path] = {}
    duplicates: set[str] = set()
    for folder in out_dirs:
        found = read_records(folder, strict=True)
        if not found:
            raise BratsxError(f"{folder}: no records (records/*.json); is it an output folder of bratsx infer?")
        for case_id, record in found.items():
            if case_id in records:
                duplicates.add(case_id)
                if _rank(record) <= _rank(records[case_id]):
                    continue
            records[case_id], folders[case_id] = record, folder
    ordered = sorted(records)
    return MergedRecords({k: records[k] for k in ordered}, {k: folders[k] for k in ordered}, sorted(duplicates))


def missing_cases(cases: Sequence[Case], records: dict[str, CaseRecord]) -> dict[str, str]:
    """The cases of a batch that have no finished (``ok``) record, each with why.

    Returns:
        By case id, in sorted order: ``"no record"`` (never run, or its part was lost) or the record's
        status and error.
    """
    missing = {}
    for case in sorted(cases, key=lambda c: c.case_id):
        record = records.get(case.case_id)
        if record is None:
            missing[case.case_id] = "no record"
        elif record.status != CaseStatus.OK:
            missing[case.case_id] = f"{record.status}: {record.error or record.note or ''}".rstrip(": ")
    return missing


@dataclass(frozen=True)
class RebuiltSummary:
    """What :func:`rebuild_summary` found and wrote.

    Attributes:
        records: one per case, sorted by id (a case of the batch that no folder recorded has status
            ``missing``).
        missing: the cases without a finished record, with why (see :func:`missing_cases`); only
            when the batch's cases were given.
        duplicates: case ids recorded in more than one folder.
        summary: the ``summary.json`` written (``metrics.csv`` beside it).
    """

    records: list[CaseRecord]
    missing: dict[str, str]
    duplicates: list[str]
    summary: Path


def _distinct(values: Iterable[Any]) -> list[Any]:
    unique = {json.dumps(value, sort_keys=True): value for value in values}
    return list(unique.values())


def rebuild_summary(out_dirs: Sequence[Path], into: Path, cases: Sequence[Case] | None = None) -> RebuiltSummary:
    """Rebuild ``metrics.csv`` and ``summary.json`` from the records of one or more output folders.

    The records are the truth (see :mod:`bratsx.runtime.records`), so the metrics equal those of one
    uninterrupted run, however the cases were split, resumed or distributed.

    Args:
        out_dirs: output folders of ``bratsx infer`` (of several parts, say).
        into: where both files go (created).
        cases: the batch: its cases define the rows, and those without a finished record are listed.

    Returns:
        The records, what is missing, the duplicates and the summary's path.

    Raises:
        BratsxError: a folder holds no records, or a record of an older format.
    """
    merged = merge_records(out_dirs)
    missing = missing_cases(cases, merged.records) if cases is not None else {}
    ids = sorted(c.case_id for c in cases) if cases is not None else list(merged.records)
    records = [merged.records.get(case_id)
               or CaseRecord(case_id, CaseStatus.MISSING, error=f"case {case_id}: no record") for case_id in ids]
    found = [r for r in records if r.status != CaseStatus.MISSING]
    models = _distinct({k: v for k, v in r.model.items() if k != "device"} for r in found)
    run = {**describe_run({"model": models, "settings": _distinct(r.settings for r in found)}),
           "merged_from": [str(folder) for folder in out_dirs],
           "devices": sorted({str(r.model.get("device")) for r in found if r.model})}
    into.mkdir(parents=True, exist_ok=True)
    summary = write_summary(records, into, run, 0.0)
    return RebuiltSummary(records, missing, merged.duplicates, summary)
