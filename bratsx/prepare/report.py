"""A one-page, self-contained HTML view of a prepare record: sequence table, registration quality, pictures, times.

Every string from the input (series descriptions, file names, case ids) is escaped; pictures are embedded
as data URIs, so the page can be mailed or archived alone.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

__all__ = ["REPORT_NAME", "prepare_sections", "write_prepare_report"]

REPORT_NAME = "report.html"


def _rows(cells: list[list[object]]) -> str:
    return "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in cells)


def _table(head: list[str], cells: list[list[object]]) -> str:
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f"<table><tr>{header}</tr>{_rows(cells)}</table>"


def _picture(folder: Path, name: str) -> str:
    data = base64.b64encode((folder / name).read_bytes()).decode()
    return f'<figure><img alt="{escape(name)}" src="data:image/png;base64,{data}"><figcaption>{escape(name)}' \
           f"</figcaption></figure>"


def _mask_check(record: dict) -> str:
    check = record.get("mask_check")
    if not check:
        return "the brain mask was not checked for cut-off tumour (no skull stripping)"
    return (f"tumour cut-off check: {check['cut_off_ml']:.1f} mL of lesion-like tissue outside the mask (limit "
            f"{check['limit_ml']:g} mL); {check['bright_inside_ml']:.0f} mL inside")


def prepare_sections(folder: Path, record: dict, level: int = 2) -> str:
    """A prepare record as HTML sections: the settings, the sequence table, registration quality (mutual
    information before and after), the brain mask's checks, the stage times and the pictures (embedded).

    Used by this page and by the batch QC report (``bratsx report``), so both show the same.

    Args:
        folder: the case's ``prepare/`` folder (the pictures are read from it).
        record: its ``prepare.json``.
        level: the headings' level.

    Returns:
        The HTML fragment; every string of the record is escaped.
    """
    h = f"h{level}"
    identification = _table(
        ["series", "sequence", "confidence", "evidence", "used"],
        [[r["series"], r["sequence"] or "-", f"{r['confidence']:.2f}",
          f"excluded: {r['excluded']}" if r["excluded"] else "; ".join(r["evidence"]), "yes" if r["used"] else ""]
         for r in record["identification"]])
    registration = _table(["registration", "mutual information before", "after"],
                          [[name, q["mi_before"], q["mi_after"]] for name, q in record["registration"].items()])
    stages = [[stage, seconds, record["cpu_seconds"].get(stage, "")] for stage, seconds in record["seconds"].items()]
    times = _table(["stage", "wall s", "CPU s"],
                   stages + [["total", record["seconds_total"], record["cpu_seconds_total"]]])
    pictures = "".join(_picture(folder, name) for name in record["pictures"]
                       if name == Path(name).name and name.endswith(".png") and (folder / name).is_file())
    return f"""<p>atlas {escape(record['atlas'])} ({escape(record['atlas_source'])}); reference \
{escape(record['reference'])}; skull strip {escape(record['skull_strip'])}; brain {record['brain_ml']:.0f} mL</p>
<p>{escape(_mask_check(record))}</p>
<{h}>Sequences</{h}>{identification}<{h}>Registration</{h}>{registration}<{h}>Times</{h}>{times}
<{h}>Pictures</{h}>{pictures}"""


def write_prepare_report(folder: Path, record: dict) -> Path:
    """Write ``folder/report.html`` (``folder`` is a case's ``prepare/``) from its record and pictures.

    Returns:
        The page's path.
    """
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>prepare {escape(record['case_id'])}</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>prepare: {escape(record['case_id'])}</h1>
{prepare_sections(folder, record)}</body></html>
"""
    path = folder / REPORT_NAME
    path.write_text(page, encoding="utf-8")
    return path
