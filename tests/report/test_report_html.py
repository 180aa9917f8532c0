"""The HTML report: self-contained, escaped, with its data and earlier verdicts readable by its script."""

import csv
import json
import re
from html.parser import HTMLParser

import pytest

from bratsx.report.collect import CaseEntry
from bratsx.report.flags import Flag, FlagKind
from bratsx.report.html import DATA_ELEMENT_ID, ReportRow, batch_report_html, run_report_html, script_json
from bratsx.report.qc import FORMULA_PREFIXES, QC_COLUMNS, Verdict, read_qc
from bratsx.report.render import CaseImages

HOSTILE_ID = '<script>alert(1)</script>[bold red]x[/]"&\u2028'
PNG = b"\x89PNG\r\n\x1a\n fake"
GIF = b"GIF89a fake"


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.scripts: dict[str, str] = {}
        self._script: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs).get("id", "")

    def handle_data(self, data):
        if self._script is not None:
            self.scripts[self._script] = self.scripts.get(self._script, "") + data

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None


def parse(page: str) -> Elements:
    elements = Elements()
    elements.feed(page)
    return elements


def report(tmp_path, qc=None) -> str:
    figure, thumbnail, gif = tmp_path / "overlay.png", tmp_path / "thumbnail.png", tmp_path / "axial.gif"
    figure.write_bytes(PNG)
    thumbnail.write_bytes(PNG)
    gif.write_bytes(GIF)
    rows = [
        ReportRow(CaseEntry(HOSTILE_ID, "ok", seconds=3.0, metrics={"dice_WT": 0.4, "lesion_dice_WT": 0.3}),
                  CaseImages(HOSTILE_ID, figure, thumbnail, gif, {"WT": 10.0, "TC": 4.0, "ET": 0.0}, False),
                  (Flag(FlagKind.ET_ABSENT, "TC 4.0 mL, ET 0 mL"), Flag(FlagKind.LOW_DICE, "Dice WT 0.40"))),
        ReportRow(CaseEntry("plain_002", "failed", error="case plain_002, file <b>t1.nii.gz</b>: truncated"),
                  None, (Flag(FlagKind.FAILED, "inference failed"),)),
    ]
    return batch_report_html(rows, title="QC <i>report</i>", facts=[("model", "https://example.org/<m>")],
                             storage_key="k", qc=qc)


def test_the_report_loads_nothing_from_the_network(tmp_path):
    page = report(tmp_path)
    for tag, attributes in parse(page).tags:
        for name in ("src", "href", "action", "data", "poster"):
            value = attributes.get(name)
            assert value is None or value.startswith("data:"), f"<{tag} {name}={value[:40]}>"
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "http://" not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_the_report_embeds_the_thumbnails_and_the_full_pictures(tmp_path):
    page = report(tmp_path)
    elements = parse(page)
    thumbnails = [a["src"] for tag, a in elements.tags if tag == "img" and a.get("class") == "thumb"]
    assert thumbnails == ["data:image/png;base64,iVBORw0KGgogZmFrZQ=="]
    data = json.loads(elements.scripts[DATA_ELEMENT_ID])
    assert data["cases"][0]["figure"].startswith("data:image/png;base64,")
    assert data["cases"][0]["gif"].startswith("data:image/gif;base64,")
    assert data["cases"][1]["figure"] is None


def test_untrusted_strings_are_escaped_in_text_attributes_and_script_data(tmp_path):
    page = report(tmp_path)
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;[bold red]x[/]&quot;&amp;" in page
    assert "<b>t1.nii.gz</b>" not in page and "<i>report</i>" not in page and "<m>" not in page
    elements = parse(page)
    assert [tag for tag, _ in elements.tags].count("script") == 2  # the data and the page's own script
    data_text = elements.scripts[DATA_ELEMENT_ID]
    assert not set("<>&\u2028\u2029") & set(data_text)
    data = json.loads(data_text)
    assert data["cases"][0]["id"] == HOSTILE_ID
    assert data["cases"][1]["error"] == "case plain_002, file <b>t1.nii.gz</b>: truncated"


def test_script_json_escapes_what_could_end_or_break_a_script_element():
    text = script_json({"a": "</script><!--&\u2028\u2029"})
    assert text == '{"a": "\\u003c/script\\u003e\\u003c!--\\u0026\\u2028\\u2029"}'
    assert json.loads(text) == {"a": "</script><!--&\u2028\u2029"}


def test_the_page_shows_summary_metrics_flags_lesion_wise_columns_and_the_flag_explanations(tmp_path):
    page = report(tmp_path)
    headings = re.findall(r"<th[^>]*>([^<]*)</th>", page[page.index('<table id="cases"'):])
    assert ["Dice WT", "LW Dice WT", "latency s"] == [h for h in headings if h in ("Dice WT", "LW Dice WT",
                                                                                     "latency s")]
    assert 'data-flags="et-absent low-dice"' in page and 'data-status="failed"' in page
    assert "<th>Dice</th><td>0.400 / 0.400</td><td></td><td></td>" in page  # summary: mean / median
    for kind in FlagKind:
        assert f'<span class="flag">{kind.value}</span>' in page  # explained in the flags section


def test_qc_csv_round_trip_shows_earlier_verdicts_in_the_rebuilt_report(tmp_path):
    qc = tmp_path / "qc.csv"
    rows = [[HOSTILE_ID, "fail", '-ET missed, "see" coronal', "dr. a", "2024-05-01T10:00:00.000Z"],
            ["plain_002", "pass", "", "dr. b", "2024-05-01T10:05:00.000Z"]]
    with qc.open("w", newline="") as handle:  # as the report's export button writes it
        writer = csv.writer(handle)
        writer.writerow(QC_COLUMNS)
        for row in rows:
            writer.writerow(["'" + c if c.startswith(FORMULA_PREFIXES) else c for c in row])
    verdicts = read_qc(qc)
    assert verdicts[HOSTILE_ID] == Verdict("fail", '-ET missed, "see" coronal', "dr. a", "2024-05-01T10:00:00.000Z")
    data = json.loads(parse(report(tmp_path, verdicts)).scripts[DATA_ELEMENT_ID])
    assert data["qc"][HOSTILE_ID]["verdict"] == "fail"
    assert data["qc"][HOSTILE_ID]["comment"] == '-ET missed, "see" coronal'
    assert data["qc"]["plain_002"] == {"verdict": "pass", "comment": "", "reviewer": "dr. b",
                                       "time": "2024-05-01T10:05:00.000Z", "corrected": "",
                                       "corrected_volumes_ml": ""}
    assert data["qcColumns"] == list(QC_COLUMNS)


@pytest.mark.parametrize("content, message", [("case_id,verdict\na,pass\n", "comment, reviewer, time"),
                                               ("case_id,verdict,comment,reviewer,time\na,maybe,,,\n", "maybe")])
def test_a_bad_qc_csv_is_refused_with_what_is_wrong(tmp_path, content, message):
    from bratsx.errors import BratsxError

    path = tmp_path / "qc.csv"
    path.write_text(content)
    with pytest.raises(BratsxError, match=message):
        read_qc(path)


def test_the_run_report_embeds_its_curves_and_lists_the_epochs():
    records = [{"epoch": 1, "train_loss": 0.9, "lr": 0.01, "seconds": 10.0},
               {"epoch": 2, "train_loss": 0.7, "lr": 0.009, "seconds": 10.0, "val_dice_WT": 0.8, "val_dice_TC": 0.6,
                "val_dice_ET": 0.5, "val_dice_mean": 0.633, "best": True}]
    page = run_report_html("run <x>", records, PNG, [("run", "/runs/<x>")])
    images = [a["src"] for tag, a in parse(page).tags if tag == "img"]
    assert images == ["data:image/png;base64,iVBORw0KGgogZmFrZQ=="]
    assert "<x>" not in page and "0.633" in page and "★" in page and "http://" not in page


def test_the_page_scores_the_regions_of_the_label_set_in_use_with_rc_apart():
    metrics = {"dice_WT": 0.9, "dice_TC": 0.8, "dice_ET": 1.0, "dice_NETC": 0.7, "dice_SNFH": 0.6, "dice_RC": 0.5}
    page = batch_report_html([ReportRow(CaseEntry("BraTS-GLI-00001-100", "ok", metrics=metrics), None, ())],
                             title="t", facts=[], storage_key="k")
    headings = re.findall(r"<th[^>]*>([^<]*)</th>", page[page.index('<table id="cases"'):])
    assert [h for h in headings if h.startswith("Dice ")] == ["Dice WT", "Dice TC", "Dice ET", "Dice NETC",
                                                               "Dice SNFH", "Dice RC"]
    assert "<th>RC mean / median</th>" in page and "<td>0.500 / 0.500</td>" in page
