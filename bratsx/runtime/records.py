"""Per-case records: the truth about a run, one JSON file per case beside the outputs.

``OUT/records/<case_id>.json`` says what went in (input files and their fingerprints, the model and its
hash, the settings), what came out (status, error, output file, seconds per stage, metrics, volumes)
and when. ``metrics.csv`` and ``summary.json`` are rebuilt from the records, so a resumed, sharded or
distributed run reports exactly what an uninterrupted one does, and a changed input or model makes
a case stale instead of silently skipped.

Every record carries its ``format`` (:data:`RECORD_FORMAT`), checked when it is read back (by a rerun,
``summarize``, ``report``, review mode, parts): a record of another format gets one clear line naming
the file, never a ``KeyError`` deep in a reader.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ..atomic import write_bytes_atomic
from ..cases import Case
from ..errors import BratsxError

__all__ = ["RECORDS_DIR", "RECORD_FORMAT", "CaseRecord", "CaseStatus", "RecordFormatError", "case_seconds",
           "input_fingerprint", "read_records", "record_path", "write_record"]

logger = logging.getLogger(__name__)


def case_seconds(seconds: Mapping[str, float]) -> float:
    """A case's time from its seconds per stage: the stages add up to it; their timed parts (``stage.part``, e.g.
    ``inference.network``) are inside them and are not added again."""
    return float(sum(value for name, value in seconds.items() if "." not in name))

RECORDS_DIR = "records"
#: The format of the records this bratsx writes; a record of another format is refused when read.
RECORD_FORMAT = 2


class CaseStatus(str, Enum):
    """How a case ended (a str enum: records store its value)."""

    OK = "ok"  # segmented
    FAILED = "failed"  # see the record's error
    SKIPPED = "skipped"  # an output exists that no record describes: left alone
    MISSING = "missing"  # evaluation, summaries: no prediction, or no record
    AMBIGUOUS = "ambiguous"  # evaluation: several candidate predictions
    UNREFERENCED = "unreferenced"  # evaluation: a prediction without a reference

    def __str__(self) -> str:
        return self.value  # as written in tables and CSV files


class RecordFormatError(BratsxError):
    """A record written in another format (an older bratsx, or not a record)."""


@dataclass
class CaseRecord:
    """One case's outcome.

    Attributes:
        case_id: the case.
        status: a :class:`CaseStatus`.
        output: the output file, relative to the output folder.
        error: one line: why the case failed.
        inputs: fingerprint of each input file (see :func:`input_fingerprint`).
        model: which model file, its hash, backend, device and precision.
        settings: the segmentation options.
        seconds: per stage, and per timed part of a stage as ``stage.part`` (:func:`case_seconds` adds them up).
        metrics: BraTS metrics against the reference, when there is one.
        label_set: the label set the reference was read in and the metrics score the regions of.
        metrics_error: why there are no metrics although a reference was given.
        volumes_ml: predicted WT/TC/ET volumes.
        note: what the scheduler did and why (``reused``, ``stale: input changed``, ...).
        finished: when (UTC, ISO 8601).
        format: the record format (:data:`RECORD_FORMAT`).
    """

    case_id: str
    status: CaseStatus
    output: str | None = None
    error: str | None = None
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] | None = None
    label_set: str | None = None
    metrics_error: str | None = None
    volumes_ml: dict[str, float] | None = None
    note: str | None = None
    finished: str = ""
    format: int = RECORD_FORMAT

    def __post_init__(self) -> None:
        self.status = CaseStatus(self.status)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, allow_nan=True)

    @classmethod
    def from_json(cls, text: str, source: Path | str = "record") -> CaseRecord:
        """Read a record back, checking its format.

        Raises:
            RecordFormatError: ``text`` is not a record of :data:`RECORD_FORMAT` (named by ``source``).
            ValueError: ``text`` is not JSON.
        """
        values = json.loads(text)
        found = values.get("format") if isinstance(values, dict) else None
        if found != RECORD_FORMAT:
            written = f"format {found}" if found is not None else "no format (bratsx before records had one)"
            raise RecordFormatError(f"{source}: a per-case record of {written}, this bratsx reads format "
                                    f"{RECORD_FORMAT}; rerun bratsx infer into a new folder (or with --overwrite)")
        known = {name for name in cls.__dataclass_fields__}
        try:
            return cls(**{k: v for k, v in values.items() if k in known})
        except (TypeError, ValueError) as error:
            raise RecordFormatError(f"{source}: not a per-case record of format {RECORD_FORMAT} ({error})") from None

    def stamped(self) -> CaseRecord:
        """This record with ``finished`` set to now."""
        self.finished = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        return self


def record_path(out_dir: Path, case_id: str) -> Path:
    """``OUT/records/<case_id>.json``."""
    return out_dir / RECORDS_DIR / f"{case_id}.json"


def write_record(out_dir: Path, record: CaseRecord) -> Path:
    """Write one record atomically."""
    path = record_path(out_dir, record.case_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, (record.to_json() + "\n").encode())


def read_records(out_dir: Path, strict: bool = False) -> dict[str, CaseRecord]:
    """Every readable record of an output folder, by case id.

    Args:
        out_dir: the output folder.
        strict: refuse a record of another format instead of leaving it out (with a warning), for readers
            whose answer would be wrong without it (``summarize``).

    Raises:
        RecordFormatError: with ``strict``, a record of another format.
    """
    folder = out_dir / RECORDS_DIR
    records = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            try:
                record = CaseRecord.from_json(path.read_text(), path)
            except RecordFormatError as error:
                if strict:
                    raise
                logger.warning("%s", error)
                continue
            except (OSError, ValueError):  # cut short by a killed writer, or unreadable: as if absent
                continue
            records[record.case_id] = record
    return records


def input_fingerprint(case: Case) -> dict[str, dict[str, Any]]:
    """Size and modification time of every file of a case: cheap, and changes whenever a file does."""
    named = dict(case.images)  # by channel name: flair, t1, ...
    if case.label is not None:
        named["label"] = case.label
    fingerprint = {}
    for name, path in sorted(named.items()):
        try:
            stat = Path(path).stat()
            fingerprint[name] = {"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        except OSError:
            fingerprint[name] = {"path": str(path)}
    return fingerprint
