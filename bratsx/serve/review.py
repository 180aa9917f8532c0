"""Review mode: the cases of a ``bratsx infer`` output, flagged as the report flags them, and the verdicts.

The batch is gathered by the report's :func:`~bratsx.report.collect.collect_batch` (same order, same
sources) and flagged by its :func:`~bratsx.report.flags.compute_flags`. Verdicts (pass / fail /
comment) go to ``PREDICTIONS/qc.csv`` in the report's columns, rewritten whole and atomically at each
verdict, so the file is always complete and a restarted server reads every verdict back.

Files are served by case id and role only (a background sequence, the reference or the prediction),
from the paths discovery and the run's records name; each is resolved (links followed) and served
only when it lies inside the cases or predictions folder, or inside its case's folder when that
folder is itself an entry of the cases folder (a linked case folder, as ``bratsx infer`` accepts:
its target is the case, while a link from inside it to elsewhere is still refused).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import threading
from pathlib import Path
from typing import Any

from ..atomic import write_bytes_atomic
from ..errors import BratsxError
from ..imageio import label_convention, read_label_file
from ..labels import LabelConvention, Modality
from ..report.collect import CaseEntry, collect_batch
from ..report.flags import Evidence
from ..report.html import ReportRow
from ..report.qc import FORMULA_PREFIXES, QC_COLUMNS, VERDICTS, Verdict, read_qc
from .correction import Correction, save_correction
from .presentation import describe_flags, json_safe, label_legend
from .uploads import LABEL_ROLE

__all__ = ["QC_NAME", "REFERENCE_ROLE", "ReviewBatch", "inside"]

QC_NAME = "qc.csv"
#: The role of a case's reference segmentation (overlaid beside the prediction, ``seg``).
REFERENCE_ROLE = "reference"


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
        labels: the label set of its predictions (``--labels``; default: each case's, as the report reads it).

    Raises:
        BratsxError: nothing to review, or an unreadable ``qc.csv``.
    """

    def __init__(self, cases_dir: Path, predictions_dir: Path, labels: LabelConvention | None = None) -> None:
        self.cases_dir, self.predictions_dir = Path(cases_dir), Path(predictions_dir)
        self.labels = labels
        self.qc_path = self.predictions_dir / QC_NAME
        self.entries: dict[str, CaseEntry] = {e.case_id: e for e in collect_batch(self.predictions_dir, cases_dir)}
        rows = {case_id: ReportRow(entry) for case_id, entry in self.entries.items()}
        self._volumes = {case_id: row.volumes_ml for case_id, row in rows.items()}
        self.flags = describe_flags([
            Evidence(case_id, entry.status == "failed", self._volumes[case_id], None,
                     {k.removeprefix("dice_"): v for k, v in entry.metrics.items() if k.startswith("dice_")})
            for case_id, entry in self.entries.items()])
        self.verdicts: dict[str, Verdict] = read_qc(self.qc_path) if self.qc_path.is_file() else {}
        self._conventions: dict[tuple[str, str], LabelConvention] = {}
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
        """The file of a case to show: a sequence (``flair``, ``t1``, ``t1ce``, ``t2``), the prediction (``seg``) or
        the reference (``reference``).

        Raises:
            KeyError: no such case, role or file, or one that lies outside the review's folders.
        """
        entry = self.entries[case_id]
        if role == LABEL_ROLE:
            path = entry.prediction
        elif role == REFERENCE_ROLE:
            path = entry.case.label if entry.case is not None else None
        elif entry.case is not None:
            path = entry.case.images.get(Modality(role))  # for MSD, the 4D file (the viewer picks the frame)
        else:
            path = None
        if path is None or not path.is_file() or not inside(path, self._roots(entry)):
            raise KeyError(role)
        return path

    def _roots(self, entry: CaseEntry) -> tuple[Path, ...]:
        """The folders a case's files may lie in: the review's two, and its own case folder when the cases folder
        holds it (it may be a link to elsewhere)."""
        roots = (self.cases_dir, self.predictions_dir)
        folder = entry.case.folder if entry.case is not None else None
        if folder is not None and folder.absolute().parent == self.cases_dir.absolute():
            roots = (*roots, folder)
        return roots

    def has_reference(self, case_id: str) -> bool:
        """Whether the case has a reference segmentation that can be shown."""
        try:
            self.file(case_id, REFERENCE_ROLE)
        except KeyError:
            return False
        return True

    def legend(self, case_id: str, role: str = LABEL_ROLE) -> list[dict[str, Any]]:
        """The label values and colours of the prediction (or, ``role="reference"``, the reference).

        Raises:
            KeyError: no such file.
            CaseError: its values fit no convention.
        """
        return label_legend(self.convention(case_id, role))

    def convention(self, case_id: str, role: str = LABEL_ROLE) -> LabelConvention:
        """The label convention of the prediction (or the reference), read from its values as the report does.

        Raises:
            KeyError: no such file.
            CaseError: its values fit no convention.
        """
        key = (case_id, role)
        if key not in self._conventions:
            entry = self.entries[case_id]
            path = self.file(case_id, role)
            data, _ = read_label_file(path, case_id)
            candidates = entry.case.label_sets if entry.case is not None else None
            self._conventions[key] = label_convention(data, case_id, path, self.labels, candidates)
        return self._conventions[key]

    def record(self, case_id: str, verdict: str, comment: str, reviewer: str = "") -> Verdict:
        """Record a verdict (keeping the case's correction, if any) and rewrite ``qc.csv`` atomically.

        Raises:
            KeyError: no such case.
            BratsxError: an unknown verdict, or ``qc.csv`` cannot be written.
        """
        if case_id not in self.entries:
            raise KeyError(case_id)
        if verdict not in ("", *VERDICTS):
            raise BratsxError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)} or empty")
        return self._update(case_id, verdict=verdict, comment=comment, reviewer=reviewer)

    def correct(self, case_id: str, content: bytes, reviewer: str = "") -> Correction:
        """Save a painted correction of the case's prediction beside it and list it in ``qc.csv``.

        Raises:
            KeyError: no such case, or no prediction.
            BratsxError: the correction does not fit the prediction (see :func:`save_correction`), or a file
                cannot be written.
        """
        prediction, convention = self.file(case_id, LABEL_ROLE), self.convention(case_id)
        with self._lock:
            correction = save_correction(content, prediction, convention, self.predictions_dir, case_id)
        changes = {"corrected": correction.path, "corrected_volumes_ml": correction.volumes_text()}
        self._update(case_id, **({"reviewer": reviewer} if reviewer else {}), **changes)
        return correction

    def _update(self, case_id: str, **changes: str) -> Verdict:
        """Change a case's row of ``qc.csv`` (stamped with the time) and rewrite the file atomically."""
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        with self._lock:
            given = dataclasses.replace(self.verdicts.get(case_id, Verdict()), **changes, time=now)
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
