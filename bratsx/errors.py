"""Error types shared by every stage.

Every error a user can cause derives from :class:`BratsxError`; the CLI turns those into one red
line and exit code 2 instead of a traceback. :class:`CaseError` names the case and the file, so a
message in a batch of hundreds of cases says exactly where to look.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["BratsxError", "CaseError", "LabelError", "failure_text"]


class BratsxError(Exception):
    """A problem the user can fix (bad input, bad option, missing dependency)."""


class CaseError(BratsxError):
    """A problem with one case: which case, which file, and what is wrong.

    Args:
        case_id: the case identifier (folder name or MSD file stem).
        problem: what is wrong, phrased so that the user knows what to fix.
        path: the offending file or folder, when there is one.
    """

    def __init__(self, case_id: str, problem: str, path: Path | str | None = None) -> None:
        self.case_id = case_id
        self.problem = problem
        self.path = Path(path) if path is not None else None
        where = f"case {case_id}"
        if self.path is not None:
            where += f", {'folder' if os.path.isdir(self.path) else 'file'} {self.path.name}"  # never raises
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):  # keeps the error picklable across worker processes
        return (type(self), (self.case_id, self.problem, self.path))


class LabelError(CaseError):
    """A problem with a case's reference segmentation only: the images are fine, so the case can still
    be segmented and its metrics reported as missing."""


def failure_text(error: BaseException, case_id: str | None = None) -> str:
    """The one line a failure is reported as, wherever it happened (a record, a web job, a worker).

    bratsx's own errors already say what and where; anything else gets its type and message, on one
    line (some span several), prefixed with the case when one is named.

    Args:
        error: what was raised.
        case_id: the case it was raised for, if any.
    """
    if isinstance(error, BratsxError):
        return " ".join(str(error).split())
    text = f"{type(error).__name__}: {' '.join(str(error).split())}".rstrip(": ")
    return f"case {case_id}: {text}" if case_id is not None else text
