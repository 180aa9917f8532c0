"""Review mode: the cases of a ``bratsx infer`` output, flagged as the report flags them, and the verdicts.

The batch is gathered by the report's :func:`~bratsx.report.collect.collect_batch` (same order, same
sources) and flagged by its :func:`~bratsx.report.flags.compute_flags`. Verdicts (pass / fail /
comment) go to ``PREDICTIONS/qc.csv`` in the report's columns, rewritten whole and atomically at each
verdict, so the file is always complete and a restarted server reads every verdict back.

Files are served by case id and role only (a background sequence or the prediction), from the paths
discovery and the run's records name; each is resolved (links followed) and served only when it
lies inside the cases or predictions folder.
"""

from __future__ import annotations

import csv
import datetime
import io
import threading
from pathlib import Path
from typing import Any

from ..atomic import write_bytes_atomic
from ..cases import Layout
from ..errors import BratsxError
from ..imageio import label_convention, read_label_file
from ..labels import LabelConvention, Modality
from ..report.collect import CaseEntry, collect_batch
from ..report.flags import Evidence
from ..report.html import ReportRow
from ..report.qc import FORMULA_PREFIXES, QC_COLUMNS, VERDICTS, Verdict, read_qc
from .presentation import describe_flags, json_safe, label_legend
from .uploads import LABEL_ROLE

__all__ = ["QC_NAME", "ReviewBatch", "inside"]

QC_NAME = "qc.csv"


def inside(path: Path, roots: tuple[Path, ...]) -> bool:
    """Whether ``path``, links resolved, lies inside one of ``roots`` (resolved too)."""
    resolved = path.resolve()
    return any(resolved.is_relative_to(root.resolve()) for root in roots)


def _guard(cell: str) -> str:
    """A cell a spreadsheet would run as a formula, with the leading ``'`` the report writes (and reads back)."""
    return f"'{cell}" if cell[:1] in FORMULA_PREFIXES else cell


class ReviewBatch:
    """A batch under review.

    Args:
        cases_dir: the cases the run segmented.
        predictions_dir: the run's output folder; verdicts go to its ``qc.csv``.

    Raises:
        BratsxError: nothing to review, or an unreadable ``qc.csv``.
    """

    def __init__(self, cases_dir: Path, predictions_dir: Path) -> None:
        self.cases_dir, self.predictions_dir = Path(cases_dir), Path(predictions_dir)
        self.qc_path = self.predictions_dir / QC_NAME
        self.entries: dict[str, CaseEntry] = {e.case_id: e for e in collect_batch(self.predictions_dir, cases_dir)}
        rows = {case_id: ReportRow(entry) for case_id, entry in self.entries.items()}
        self._volumes = {case_id: row.volumes_ml for case_id, row in rows.items()}
        self.flags = describe_flags([
            Evidence(case_id, entry.status == "failed", self._volumes[case_id], None,
                     {k.removeprefix("dice_"): v for k, v in entry.metrics.items() if k.startswith("dice_")})
            for case_id, entry in self.entries.items()])
        self.verdicts: dict[str, Verdict] = read_qc(self.qc_path) if self.qc_path.is_file() else {}
        self._conventions: dict[str, LabelConvention] = {}
        self._lock = threading.Lock()

    def cases(self) -> list[dict[str, Any]]:
        """Every case as the page lists it, in the report's order."""
        with self._lock:
            verdicts = dict(self.verdicts)
        return [json_safe({
            "case_id": case_id, "status": entry.status, "error": entry.error,
            "has_prediction": entry.prediction is not None, "has_images": entry.case is not None,
            "volumes_ml": self._volumes[case_id], "metrics": dict(entry.metrics), "flags": self.flags[case_id],
            "verdict": verdicts.get(case_id, Verdict()).to_dict(),
        }) for case_id, entry in self.entries.items()]

    def entry(self, case_id: str) -> CaseEntry:
        """A case of the batch (:class:`KeyError` when it has none of this id)."""
        return self.entries[case_id]

    def file(self, case_id: str, role: str) -> Path:
        """The file of a case to show: a sequence (``flair``, ``t1``, ``t1ce``, ``t2``) or the prediction (``seg``).

        Raises:
            KeyError: no such case, role or file, or one that lies outside the review's folders.
        """
        entry = self.entries[case_id]
        if role == LABEL_ROLE:
            path = entry.prediction
        elif entry.case is not None:
            path = entry.case.images.get(Modality(role))  # for MSD, the 4D file (the viewer picks the frame)
        else:
            path = None
        if path is None or not path.is_file() or not inside(path, (self.cases_dir, self.predictions_dir)):
            raise KeyError(role)
        return path

    def legend(self, case_id: str) -> list[dict[str, Any]]:
        """The prediction's label values and colours (its convention read from its values, as the report does).

        Raises:
            KeyError: no prediction.
            CaseError: its values fit no convention.
        """
        if case_id not in self._conventions:
            entry = self.entries[case_id]
            path = self.file(case_id, LABEL_ROLE)
            data, _ = read_label_file(path, case_id)
            msd = LabelConvention.MSD if entry.case is not None and entry.case.layout is Layout.MSD else None
            self._conventions[case_id] = label_convention(data, case_id, path, msd)
        return label_legend(self._conventions[case_id])

    def record(self, case_id: str, verdict: str, comment: str, reviewer: str = "") -> Verdict:
        """Record a verdict and rewrite ``qc.csv`` atomically.

        Raises:
            KeyError: no such case.
            BratsxError: an unknown verdict, or ``qc.csv`` cannot be written.
        """
        if case_id not in self.entries:
            raise KeyError(case_id)
        if verdict not in ("", *VERDICTS):
            raise BratsxError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)} or empty")
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        given = Verdict(verdict, comment, reviewer, now)
        with self._lock:
            self.verdicts[case_id] = given
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(QC_COLUMNS)
            for name, kept in self.verdicts.items():
                cells = {"case_id": name, **kept.to_dict()}
                writer.writerow([_guard(str(cells[column])) for column in QC_COLUMNS])
            try:
                write_bytes_atomic(self.qc_path, buffer.getvalue().encode("utf-8"))
            except OSError as error:
                raise BratsxError(f"{self.qc_path}: cannot write the verdicts ({error.strerror or error})") from None
        return given
