"""Review verdicts: the ``qc.csv`` the report's export button writes, read back when a report is rebuilt.

The columns are defined here once; the report's JavaScript receives them with its data and writes
the file in the same order. A cell that a spreadsheet would run as a formula (starting with ``=``,
``+``, ``-``, ``@``, tab or carriage return) is written with a leading ``'``, which reading removes.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import BratsxError

__all__ = ["FORMULA_PREFIXES", "QC_COLUMNS", "VERDICTS", "Verdict", "read_qc"]

#: Columns of ``qc.csv``, in order; the last two (a correction saved by ``bratsx serve``: its file and volumes)
#: may be absent from files written before them.
QC_COLUMNS = ("case_id", "verdict", "comment", "reviewer", "time", "corrected", "corrected_volumes_ml")
_OPTIONAL_COLUMNS = ("corrected", "corrected_volumes_ml")
#: Verdicts a reviewer can give (an empty verdict: not reviewed, possibly with a comment).
VERDICTS = ("pass", "fail")
#: First characters that make a spreadsheet cell a formula; such cells are written with a leading ``'``.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Verdict:
    """One case's review: ``pass``, ``fail`` or empty, a comment, who and when (ISO 8601, UTC), and a correction
    saved in the web app (its file relative to the predictions folder, its volumes as ``WT=12.345;TC=...``)."""

    verdict: str = ""
    comment: str = ""
    reviewer: str = ""
    time: str = ""
    corrected: str = ""
    corrected_volumes_ml: str = ""

    def to_dict(self) -> dict[str, str]:
        """The verdict as the report's JavaScript stores it."""
        return asdict(self)


def _unguard(cell: str) -> str:
    """A cell as typed, without the ``'`` that kept a spreadsheet from running it as a formula."""
    return cell[1:] if cell[:1] == "'" and cell[1:2] in FORMULA_PREFIXES else cell


def read_qc(path: Path) -> dict[str, Verdict]:
    """The verdicts of a ``qc.csv`` by case id (the last row of a case wins).

    Raises:
        BratsxError: the file is unreadable, lacks a column, or holds an unknown verdict.
    """
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = set(reader.fieldnames or ())
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise BratsxError(f"{path}: cannot read the QC file ({error})") from error
    missing = [c for c in QC_COLUMNS if c not in columns and c not in _OPTIONAL_COLUMNS]
    if missing:
        raise BratsxError(f"{path}: not a bratsx qc.csv, columns {', '.join(missing)} are missing "
                          f"(expected {', '.join(c for c in QC_COLUMNS if c not in _OPTIONAL_COLUMNS)})")
    verdicts = {}
    for line, row in enumerate(rows, start=2):
        cells = {c: _unguard(row.get(c) or "") for c in QC_COLUMNS}
        if cells["verdict"] not in ("", *VERDICTS):
            raise BratsxError(f"{path}, line {line}: verdict {cells['verdict']!r} is not one of {', '.join(VERDICTS)} "
                              "or empty")
        case_id = cells.pop("case_id")
        verdicts[case_id] = Verdict(**cells)
    return verdicts
