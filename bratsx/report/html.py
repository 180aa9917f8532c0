"""Self-contained HTML pages: the batch QC report and the training-run report.

A page is one file that opens offline with no network request at all: images are ``data:`` URIs,
CSS and JavaScript are inline, and a Content-Security-Policy forbids loading anything else. Every
untrusted string (case ids, file names, errors, commands) is escaped: :func:`html.escape` in text and
attributes, and :func:`script_json` for the data the page's script reads.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from ..labels import REGION_ORDER, Tissue
from ..metrics import scored_regions
from .collect import CaseEntry
from .colors import TISSUE_COLORS, TISSUE_NAMES
from .flags import Flag, FlagKind, FlagOptions, flag_explanations
from .overlay import ORIENTATION_NOTE
from .qc import FORMULA_PREFIXES, QC_COLUMNS, VERDICTS, Verdict
from .render import CaseImages

__all__ = ["DATA_ELEMENT_ID", "ReportRow", "batch_report_html", "data_uri", "run_report_html", "script_json"]

#: ``id`` of the ``<script type="application/json">`` element holding a batch report's data.
DATA_ELEMENT_ID = "bratsx-data"

_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        "base-uri 'none'; form-action 'none'")
#: Metric columns of the case table: key prefix, heading, decimals.
_METRIC_COLUMNS = (("dice", "Dice", 3), ("hd95", "HD95", 1), ("lesion_dice", "LW Dice", 3),
                   ("lesion_hd95", "LW HD95", 1))
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


@dataclass(frozen=True)
class ReportRow:
    """One case of the batch report: what the run recorded, what was drawn, the flags raised."""

    entry: CaseEntry
    images: CaseImages | None = None
    flags: Sequence[Flag] = field(default_factory=tuple)
    prepare: str | None = None  # the case's preparation from raw scans, as escaped HTML (:mod:`.prepared`)

    @property
    def volumes_ml(self) -> dict[str, float]:
        """Predicted WT/TC/ET volumes: measured on the prediction file, else as the run recorded them."""
        if self.images is not None and self.images.volumes_ml is not None:
            return dict(self.images.volumes_ml)
        if self.entry.volumes_ml:
            return dict(self.entry.volumes_ml)
        metrics = self.entry.metrics
        return {r.value: metrics[f"volume_pred_ml_{r.value}"] for r in REGION_ORDER
                if f"volume_pred_ml_{r.value}" in metrics}


def script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: ``<``, ``>``, ``&``, U+2028 and U+2029 as ``\\u`` escapes."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False)
    for character, replacement in _JSON_ESCAPES.items():
        text = text.replace(character, replacement)
    return text


def data_uri(content: bytes | Path, mime: str) -> str:
    """A ``data:`` URI of a file's bytes (base64)."""
    raw = content.read_bytes() if isinstance(content, Path) else content
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def _page(title: str, body: str, script: str = "") -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n"
            f"{f'<script>{script}</script>' if script else ''}\n</body>\n</html>\n")


def _number(value: float | None, decimals: int) -> tuple[str, str]:
    """(sort key, shown text) of a number; empty when unknown."""
    return ("", "") if value is None else (repr(float(value)), f"{value:.{decimals}f}")


def _cell(sort: str, text: str, css: str = "") -> str:
    attribute = f' class="{css}"' if css else ""
    return f'<td data-sort="{escape(sort)}"{attribute}>{text}</td>'


def _facts(facts: Sequence[tuple[str, str]]) -> str:
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    return f'<dl class="facts">{items}</dl>'


def _summary_table(entries: Sequence[CaseEntry]) -> str:
    """Mean and median of each Dice/HD95 column over the cases that have it."""
    rows = []
    scored = scored_regions(e.metrics for e in entries)
    for prefix, heading, decimals in _METRIC_COLUMNS:
        cells = []
        for region in scored:
            values = [e.metrics[f"{prefix}_{region}"] for e in entries if f"{prefix}_{region}" in e.metrics]
            cells.append(f"<td>{np.mean(values):.{decimals}f} / {np.median(values):.{decimals}f}</td>" if values
                         else "<td></td>")
        if any(cell != "<td></td>" for cell in cells):
            rows.append(f"<tr><th>{escape(heading)}</th>{''.join(cells)}</tr>")
    if not rows:
        return "<p>No reference segmentations: no metrics.</p>"
    regions = "".join(f"<th>{escape(region)} mean / median</th>" for region in scored)
    return f'<table class="summary"><tr><th></th>{regions}</tr>{"".join(rows)}</table>'


def _metric_columns(rows: Sequence[ReportRow]) -> list[tuple[str, str, int]]:
    """(key, heading, decimals) of each metric some case has, in the table's order: per region of the label set
    the records were scored in (WT, TC, ET, then its own: NETC, SNFH and RC, scored apart, for BraTS 2024)."""
    present = {key for row in rows for key in row.entry.metrics}
    return [(f"{prefix}_{region}", f"{heading} {region}", decimals) for prefix, heading, decimals in _METRIC_COLUMNS
            for region in scored_regions(row.entry.metrics for row in rows) if f"{prefix}_{region}" in present]


def _legend() -> str:
    swatches = "".join(f'<span class="swatch" style="background:rgb{TISSUE_COLORS[t]}"></span>'
                       f"{escape(TISSUE_NAMES[t])} " for t in Tissue)
    return f'<p class="legend">{swatches}<br>{escape(ORIENTATION_NOTE)}</p>'


def _flag_section(rows: Sequence[ReportRow], options: FlagOptions) -> str:
    counts = {kind: sum(any(f.kind is kind for f in row.flags) for row in rows) for kind in FlagKind}
    items = "".join(f'<dt><span class="flag">{kind.value}</span> {counts[kind]} case(s)</dt><dd>{escape(text)}</dd>'
                    for kind, text in flag_explanations(options).items())
    return f'<section><h2>Flags</h2><dl class="flags">{items}</dl></section>'


def _row_html(index: int, row: ReportRow, metric_columns: Sequence[tuple[str, str, int]]) -> str:
    entry, volumes = row.entry, row.volumes_ml
    thumbnail = row.images.thumbnail if row.images is not None else None
    picture = (f'<img class="thumb" alt="" src="{data_uri(thumbnail, "image/png")}">' if thumbnail is not None
               else '<span class="none">no picture</span>')
    problem = entry.error or (row.images.error if row.images is not None else None)
    status = f'<span class="{escape(entry.status)}" title="{escape(problem or "")}">{escape(entry.status)}</span>'
    flags = " ".join(f'<span class="flag" title="{escape(f.detail)}">{escape(f.kind.value)}</span>'
                     for f in row.flags)
    cells = [
        _cell("", picture),
        _cell(entry.case_id, f'<button class="open" type="button">{escape(entry.case_id)}</button>'),
        _cell(entry.status, status),
        _cell(str(len(row.flags)), flags),
        *(_cell(*_number(volumes.get(r.value), 1), "num") for r in REGION_ORDER),
        *(_cell(*_number(entry.metrics.get(key), decimals), "num") for key, _, decimals in metric_columns),
        _cell(*_number(entry.seconds, 1), "num"),
        _cell("", '<select class="verdict"><option value="">–</option>'
                  + "".join(f'<option value="{v}">{v}</option>' for v in VERDICTS)
                  + '</select> <input class="comment" type="text" placeholder="comment" size="18">'),
    ]
    kinds = " ".join(f.kind.value for f in row.flags)
    return (f'<tr data-i="{index}" data-status="{escape(entry.status)}" data-flags="{escape(kinds)}">'
            f'{"".join(cells)}</tr>')


def _case_data(row: ReportRow) -> dict[str, Any]:
    images = row.images
    return {
        "id": row.entry.case_id,
        "status": row.entry.status,
        "error": row.entry.error or (images.error if images is not None else None),
        "flags": [[f.kind.value, f.detail] for f in row.flags],
        "metrics": dict(row.entry.metrics),
        "figure": data_uri(images.figure, "image/png") if images is not None and images.figure else None,
        "gif": data_uri(images.gif, "image/gif") if images is not None and images.gif else None,
        "prepared": row.prepare is not None,
    }


def batch_report_html(
    rows: Sequence[ReportRow],
    *,
    title: str,
    facts: Sequence[tuple[str, str]],
    storage_key: str,
    flag_options: FlagOptions = FlagOptions(),
    qc: Mapping[str, Verdict] | None = None,
) -> str:
    """The QC report of a batch as one self-contained HTML page.

    Args:
        rows: the cases, in table order.
        title: page title (escaped).
        facts: (label, value) pairs for the header: model, commands, versions (escaped).
        storage_key: names the browser storage of this report's verdicts, so a rebuilt report finds them.
        flag_options: the thresholds the flags used (explained on the page).
        qc: earlier verdicts by case id (from ``qc.csv``); the newer of these and the browser's wins.

    Returns:
        The page.
    """
    metric_columns = _metric_columns(rows)
    statuses = Counter(row.entry.status for row in rows)
    referenced = sum(bool(row.entry.metrics) for row in rows)
    flagged = sum(bool(row.flags) for row in rows)
    latencies = [row.entry.seconds for row in rows if row.entry.seconds is not None]
    prepared = sum(row.prepare is not None for row in rows)
    counts = [("cases", len(rows)), *sorted(statuses.items()), ("with reference", referenced), ("flagged", flagged),
              *([("prepared from raw scans", prepared)] if prepared else [])]
    cards = "".join(f'<span class="card"><b>{n}</b> {escape(label)}</span>' for label, n in counts)
    if latencies:
        cards += (f'<span class="card"><b>{np.mean(latencies):.1f} s</b> mean latency '
                  f'({np.median(latencies):.1f} s median)</span>')
    cards += '<span class="card"><b id="reviewed">0</b> reviewed</span>'
    headings = ["", "case", "status", "flags", "WT mL", "TC mL", "ET mL", *(h for _, h, _ in metric_columns),
                "latency s", "review"]
    sortable = set(range(1, len(headings) - 1))
    head = "".join(f"<th{' data-sortable' if i in sortable else ''}>{escape(h)}</th>" for i, h in enumerate(headings))
    body_rows = "\n".join(_row_html(i, row, metric_columns) for i, row in enumerate(rows))
    status_choices = "".join(f"<option>{escape(status)}</option>" for status in sorted(statuses))
    flag_choices = "".join(f'<option value="{k.value}">{k.value}</option>' for k in FlagKind)
    data = {
        "key": storage_key,
        "cases": [_case_data(row) for row in rows],
        "qc": {case_id: verdict.to_dict() for case_id, verdict in (qc or {}).items()},
        "qcColumns": list(QC_COLUMNS),
        "formulaPrefixes": list(FORMULA_PREFIXES),
    }
    preparations = "\n".join(f'<template id="prepare-{i}"><h2>Preparation from raw scans</h2>{row.prepare}</template>'
                             for i, row in enumerate(rows) if row.prepare is not None)
    body = f"""<header><h1>{escape(title)}</h1>
<p class="cards">{cards}</p>
{_summary_table([row.entry for row in rows])}
{_facts(facts)}
{_legend()}
</header>
{_flag_section(rows, flag_options)}
<section><h2>Cases</h2>
<div class="toolbar">
<input id="filter-q" type="search" placeholder="filter case id">
<select id="filter-status"><option value="">any status</option>{status_choices}</select>
<select id="filter-flag"><option value="">any flags</option><option value="any">flagged</option>
<option value="none">not flagged</option>{flag_choices}</select>
<select id="filter-verdict"><option value="">any verdict</option><option value="unreviewed">unreviewed</option>
<option>pass</option><option>fail</option></select>
<span><b id="shown">{len(rows)}</b> shown</span>
<label>reviewer <input id="reviewer" type="text" size="12"></label>
<button id="export" type="button">export qc.csv</button>
</div>
<table id="cases"><thead><tr>{head}</tr></thead>
<tbody>
{body_rows}
</tbody></table>
<p class="hint">Click a column heading to sort, a case to see its pictures. Verdicts stay in this browser;
export them to qc.csv and pass it to <code>bratsx report --qc qc.csv</code> to see them in a rebuilt report.</p>
</section>
<dialog id="detail"><button class="close" type="button">close</button><h2></h2>
<div class="info"></div><img class="figure" alt="overlay"><img class="gif" alt="axial fly-through">
<div class="prepare"></div></dialog>
{preparations}
<script type="application/json" id="{DATA_ELEMENT_ID}">{script_json(data)}</script>"""
    return _page(title, body, _SCRIPT.replace("__DATA_ELEMENT_ID__", DATA_ELEMENT_ID))


def run_report_html(title: str, records: Sequence[Mapping[str, Any]], curves: bytes,
                    facts: Sequence[tuple[str, str]]) -> str:
    """The report of a training run: its curves and, per epoch, loss and validation Dice.

    Args:
        title: page title (escaped).
        records: ``metrics.jsonl`` records, one per epoch.
        curves: the curves PNG.
        facts: (label, value) pairs for the header.

    Returns:
        The page.
    """
    keys = [("train_loss", "train loss", 4), ("lr", "learning rate", 6), ("seconds", "seconds", 0),
            *((f"val_dice_{r}", f"val Dice {r}", 3) for r in (*(r.value for r in REGION_ORDER), "mean"))]
    head = "".join(f"<th>{escape(h)}</th>" for h in ("epoch", *(h for _, h, _ in keys), "best"))
    rows = []
    for record in records:
        values = "".join(f"<td class=\"num\">{_number(_float(record.get(k)), d)[1]}</td>" for k, _, d in keys)
        rows.append(f"<tr><td>{escape(str(record.get('epoch', '')))}</td>{values}"
                    f"<td>{'★' if record.get('best') else ''}</td></tr>")
    body = (f"<header><h1>{escape(title)}</h1>{_facts(facts)}</header>"
            f'<img class="curves" alt="training curves" src="{data_uri(curves, "image/png")}">'
            f'<section><h2>Epochs</h2><table id="cases"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></section>")
    return _page(title, body)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 2em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:.8em 0 .3em}h2{font-size:1.15em;margin:1.2em 0 .4em}
.cards .card{display:inline-block;margin:0 .4em .4em 0;padding:.3em .7em;background:#fff;border:1px solid #ddd;
border-radius:4px}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}
th[data-sortable]{cursor:pointer;user-select:none}th[data-order=asc]::after{content:" \\25B2"}
th[data-order=desc]::after{content:" \\25BC"}td.num{text-align:right;font-variant-numeric:tabular-nums}
.summary td{font-variant-numeric:tabular-nums}
.facts{display:grid;grid-template-columns:max-content auto;gap:2px 1em;margin:.6em 0}.facts dt{color:#666}
.facts dd{margin:0;word-break:break-all}
.flags dt{margin-top:.4em}.flags dd{margin:0 0 0 1.5em;color:#444}
.flag{display:inline-block;padding:0 .4em;margin:1px;border-radius:3px;background:#fde2b0;color:#6a4400;
font-size:.85em}
.failed{color:#b00;font-weight:600}.none{color:#999;font-size:.85em}
.swatch{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 .8em;vertical-align:middle;border:1px solid #999}
.legend{margin:.3em 0;color:#444}
.toolbar{display:flex;flex-wrap:wrap;gap:.6em;align-items:center;margin:.4em 0}
img.thumb{display:block;height:64px;cursor:zoom-in;background:#000}
button.open{border:0;background:none;color:#0645ad;cursor:pointer;padding:0;font:inherit;text-align:left}
dialog{max-width:95vw;max-height:95vh;overflow:auto}dialog img{display:block;margin:.5em 0;max-width:100%;
image-rendering:auto}dialog img.figure{min-width:min(900px,90vw)}dialog img.gif{width:min(480px,90vw)}
.info p{margin:.2em 0}.info .error{color:#b00}.info table{margin:.4em 0}
img.curves{max-width:100%;border:1px solid #ddd;background:#fff}
.hint{color:#666;font-size:.9em}
.prepare figure{display:inline-block;margin:.3em}.prepare figure img{max-width:min(440px,90vw)}
"""

_SCRIPT = r"""
(() => {
"use strict";
const DATA = JSON.parse(document.getElementById("__DATA_ELEMENT_ID__").textContent);
const KEY = "bratsx-qc:" + DATA.key;
const tbody = document.querySelector("#cases tbody");
const rows = Array.from(tbody.rows);
const caseOf = row => DATA.cases[Number(row.dataset.i)];
let state = {reviewer: "", verdicts: {}};
try {
  const saved = JSON.parse(localStorage.getItem(KEY) || "null");
  if (saved && saved.verdicts) state = saved;
} catch (error) { /* storage unavailable: verdicts last until the page closes */ }
for (const [id, imported] of Object.entries(DATA.qc)) {
  const mine = state.verdicts[id];
  if (!mine || (imported.time || "") > (mine.time || "")) state.verdicts[id] = imported;
}
const reviewed = document.getElementById("reviewed");
function save() {
  try { localStorage.setItem(KEY, JSON.stringify(state)); } catch (error) { /* see above */ }
  reviewed.textContent = Object.values(state.verdicts).filter(v => v.verdict).length;
}
const reviewer = document.getElementById("reviewer");
reviewer.value = state.reviewer || "";
reviewer.addEventListener("input", () => { state.reviewer = reviewer.value; save(); });

const filters = ["q", "status", "flag", "verdict"].map(name => document.getElementById("filter-" + name));
function applyFilter() {
  const [query, status, flag, verdict] = filters.map(control => control.value);
  let shown = 0;
  for (const row of rows) {
    const flags = row.dataset.flags ? row.dataset.flags.split(" ") : [];
    const visible = (!query || caseOf(row).id.toLowerCase().includes(query.toLowerCase()))
      && (!status || row.dataset.status === status)
      && (!flag || (flag === "any" ? flags.length > 0 : flag === "none" ? flags.length === 0 : flags.includes(flag)))
      && (!verdict || (verdict === "unreviewed" ? !row.dataset.verdict : row.dataset.verdict === verdict));
    row.hidden = !visible;
    shown += visible ? 1 : 0;
  }
  document.getElementById("shown").textContent = shown;
}
filters.forEach(control => control.addEventListener("input", applyFilter));

const dialog = document.getElementById("detail");
function add(parent, tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  element.textContent = text;
  parent.appendChild(element);
  return element;
}
function showImage(image, uri) {
  image.hidden = !uri;
  if (uri) image.src = uri; else image.removeAttribute("src");
}
function openCase(item) {
  dialog.querySelector("h2").textContent = item.id;
  const info = dialog.querySelector(".info");
  info.replaceChildren();
  add(info, "p", "", "status: " + item.status);
  if (item.error) add(info, "p", "error", item.error);
  for (const [kind, detail] of item.flags) add(info, "p", "", "flag " + kind + ": " + detail);
  const metrics = Object.entries(item.metrics);
  if (metrics.length) {
    const table = add(info, "table", "", "");
    for (const [name, value] of metrics) {
      const row = table.insertRow();
      row.insertCell().textContent = name;
      row.insertCell().textContent = Number.isInteger(value) ? value : value.toFixed(3);
    }
  }
  showImage(dialog.querySelector("img.figure"), item.figure);
  showImage(dialog.querySelector("img.gif"), item.gif);
  const preparation = document.getElementById("prepare-" + DATA.cases.indexOf(item));
  dialog.querySelector(".prepare").replaceChildren(...(preparation ? [preparation.content.cloneNode(true)] : []));
  dialog.showModal();
}
dialog.addEventListener("click", event => { if (event.target === dialog) dialog.close(); });
dialog.querySelector("button.close").addEventListener("click", () => dialog.close());

for (const row of rows) {
  const item = caseOf(row), select = row.querySelector("select.verdict"), comment = row.querySelector("input.comment");
  const verdict = state.verdicts[item.id] || {};
  select.value = verdict.verdict || "";
  comment.value = verdict.comment || "";
  row.dataset.verdict = select.value;
  const record = () => {
    state.verdicts[item.id] = {verdict: select.value, comment: comment.value, reviewer: state.reviewer || "",
                               time: new Date().toISOString()};
    row.dataset.verdict = select.value;
    save();
    applyFilter();
  };
  select.addEventListener("change", record);
  comment.addEventListener("change", record);
  row.querySelector("button.open").addEventListener("click", () => openCase(item));
  const thumbnail = row.querySelector("img.thumb");
  if (thumbnail) thumbnail.addEventListener("click", () => openCase(item));
}

function compare(a, b, ascending) {
  if (a === "" || b === "") return a === b ? 0 : (a === "" ? 1 : -1);
  const x = Number(a), y = Number(b);
  const order = !isNaN(x) && !isNaN(y) ? x - y : a.localeCompare(b, undefined, {numeric: true});
  return ascending ? order : -order;
}
document.querySelectorAll("#cases th[data-sortable]").forEach(heading => {
  heading.addEventListener("click", () => {
    const column = heading.cellIndex, ascending = heading.dataset.order !== "asc";
    document.querySelectorAll("#cases th").forEach(other => delete other.dataset.order);
    heading.dataset.order = ascending ? "asc" : "desc";
    const key = row => row.cells[column].dataset.sort || "";
    rows.sort((a, b) => compare(key(a), key(b), ascending)).forEach(row => tbody.appendChild(row));
  });
});

function csvCell(value) {
  let text = String(value == null ? "" : value);
  if (DATA.formulaPrefixes.some(prefix => text.startsWith(prefix))) text = "'" + text;
  return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}
document.getElementById("export").addEventListener("click", () => {
  const lines = [DATA.qcColumns.join(",")];
  for (const item of DATA.cases) {
    const verdict = state.verdicts[item.id];
    if (verdict && (verdict.verdict || verdict.comment)) {
      lines.push(DATA.qcColumns.map(column => csvCell(column === "case_id" ? item.id : verdict[column])).join(","));
    }
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([lines.join("\r\n") + "\r\n"], {type: "text/csv"}));
  link.download = "qc.csv";
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
});
save();
applyFilter();
})();
"""
