"""The preparation of a case in the batch QC report: what ``bratsx prepare`` recorded, on the case's own page.

A case that ``bratsx prepare`` (or ``bratsx infer --prepare``) made from raw scans carries ``prepare/`` in its
folder: the record (``prepare.json``: sequence table, mutual information before and after each registration,
the brain mask's volume and tumour cut-off check, seconds per stage) and the pictures (each sequence over the
atlas' edges, the brain mask over T1ce). The report shows them in the case's detail view, built by the same
function as the case's own ``prepare/report.html`` (:func:`bratsx.prepare.report.prepare_sections`).
"""

from __future__ import annotations

import json
import logging

from .collect import CaseEntry

__all__ = ["prepare_html"]

log = logging.getLogger(__name__)


def prepare_html(entry: CaseEntry) -> str | None:
    """The preparation of ``entry``'s case as an HTML fragment (escaped), or ``None`` for a case not prepared.

    A record that cannot be read gives one escaped line saying so, never a failed report.
    """
    from html import escape

    from ..prepare.pipeline import PREPARE_FOLDER, RECORD_NAME
    from ..prepare.report import prepare_sections

    if entry.case is None:
        return None
    folder = entry.case.folder / PREPARE_FOLDER
    path = folder / RECORD_NAME
    if not path.is_file():
        return None
    try:
        return prepare_sections(folder, json.loads(path.read_text(encoding="utf-8")), level=3)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("%s: unreadable prepare record (%s)", path, error)
        return f'<p class="error">{escape(str(path))}: unreadable prepare record ({escape(type(error).__name__)})</p>'
