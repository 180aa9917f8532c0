"""``bratsx report`` end to end on small synthetic cases, and the library call behind it."""

import json
import subprocess
import sys

from reportcases import write_case
from typer.testing import CliRunner

from bratsx.cli import app
from bratsx.report.build import ReportOptions, build_batch_report, case_folder_name
from bratsx.report.flags import FlagKind
from bratsx.report.html import DATA_ELEMENT_ID
from bratsx.report.options import RenderOptions

runner = CliRunner()


def embedded_data(page: str) -> dict:
    start = page.index(f'id="{DATA_ELEMENT_ID}">') + len(f'id="{DATA_ELEMENT_ID}">')
    return json.loads(page[start : page.index("</script>", start)])


def batch(tmp_path, count: int = 2):
    for i in range(count):
        write_case(tmp_path / "cases", f"case_{i + 1:03d}", seed=i, prediction_dir=tmp_path / "pred")
    return tmp_path / "pred", tmp_path / "cases"


def test_report_writes_pictures_gifs_and_a_self_contained_page(tmp_path):
    pred, cases = batch(tmp_path)
    result = runner.invoke(app, ["report", str(pred), "--cases", str(cases), "--gif", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    out = pred / "report"
    for case_id in ("case_001", "case_002"):
        assert {p.name for p in (out / "cases" / case_id).iterdir()} == {"overlay.png", "thumbnail.png", "axial.gif"}
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page
    data = embedded_data(page)
    assert [c["id"] for c in data["cases"]] == ["case_001", "case_002"]
    assert all(c["figure"].startswith("data:image/png") and c["gif"].startswith("data:image/gif")
               for c in data["cases"])
    assert "2 case(s), 2 drawn" in result.output


def test_report_shows_the_verdicts_of_an_earlier_qc_csv(tmp_path):
    pred, cases = batch(tmp_path, 1)
    qc = tmp_path / "qc.csv"
    qc.write_text("case_id,verdict,comment,reviewer,time\ncase_001,fail,\"'=edema, too large\",me,"
                  "2024-01-01T00:00:00.000Z\n")
    result = runner.invoke(app, ["report", str(pred), "-c", str(cases), "--qc", str(qc), "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    data = embedded_data((tmp_path / "r" / "report.html").read_text())
    assert data["qc"]["case_001"]["verdict"] == "fail"
    assert data["qc"]["case_001"]["comment"] == "=edema, too large"


def test_report_of_a_training_run_draws_its_curves(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    records = [{"epoch": e, "train_loss": 1.0 / e, "lr": 0.01, "seconds": 5.0} for e in range(1, 5)]
    records[-1].update({"val_dice_WT": 0.8, "val_dice_TC": 0.7, "val_dice_ET": 0.6, "val_dice_mean": 0.7})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    page = (run / "report" / "report.html").read_text()
    assert "data:image/png;base64," in page and "mean Dice 0.700 at epoch 4" in page
    assert (run / "report" / "curves.png").stat().st_size > 1000


def test_an_unreadable_qc_csv_is_one_error_line(tmp_path):
    pred, cases = batch(tmp_path, 1)
    qc = tmp_path / "qc.csv"
    qc.write_text("id,ok\n")
    result = runner.invoke(app, ["report", str(pred), "-c", str(cases), "--qc", str(qc)])
    assert result.exit_code == 2
    assert "not a bratsx qc.csv" in result.output


def test_worker_processes_draw_what_one_process_draws_and_flags_are_computed(tmp_path):
    pred, cases = batch(tmp_path, 2)
    (pred / "metrics.csv").write_text("case_id,status,dice_WT,dice_TC,dice_ET\ncase_001,ok,0.95,0.9,0.2\n"
                                      "case_002,ok,0.9,0.9,0.9\ncase_003,failed,,,\n")
    pooled = build_batch_report(pred, cases, tmp_path / "pooled", ReportOptions(jobs=2))
    build_batch_report(pred, cases, tmp_path / "serial", ReportOptions(jobs=1, render=RenderOptions()))
    for case_id in ("case_001", "case_002"):
        folder = case_folder_name(case_id)
        assert ((tmp_path / "pooled" / "cases" / folder / "overlay.png").read_bytes()
                == (tmp_path / "serial" / "cases" / folder / "overlay.png").read_bytes())
    flags = {row.entry.case_id: [f.kind for f in row.flags] for row in pooled.rows}
    assert flags == {"case_001": [FlagKind.LOW_DICE], "case_002": [], "case_003": [FlagKind.FAILED]}
    assert pooled.picture_errors == [("case_003", "case case_003: no input case of this id was found, so no picture")]


def test_case_folder_names_are_safe_and_distinct():
    assert case_folder_name("BraTS-GLI-00001-000") == "BraTS-GLI-00001-000"
    hostile = case_folder_name("../<script>")
    assert "/" not in hostile and not hostile.startswith(".") and hostile != case_folder_name("../<script >")


def test_the_report_modules_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None; import bratsx.report.build, bratsx.cli.report; "
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_without_pillow_the_cli_starts_and_report_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['PIL'] = None; from typer.testing import CliRunner; from bratsx.cli import app; "
            f"r = CliRunner().invoke(app, ['report', {str(tmp_path)!r}]); print(r.exit_code, r.output)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2 error: Pillow is not installed (for bratsx report)")
    assert "bratsx[report]" in result.stdout


def test_a_crash_while_drawing_one_case_becomes_its_error_and_the_report_is_built(tmp_path, monkeypatch):
    import bratsx.report.build as build

    pred, cases = batch(tmp_path, 2)
    real = build.render_case

    def crash_on_first(case_id, *args, **kwargs):
        if case_id == "case_001":
            raise ValueError("bad voxels")
        return real(case_id, *args, **kwargs)

    monkeypatch.setattr(build, "render_case", crash_on_first)
    result = build_batch_report(pred, cases, tmp_path / "out", ReportOptions(jobs=1))
    assert result.picture_errors == [("case_001", "case case_001: drawing failed (ValueError: bad voxels)")]
    assert result.html.is_file() and result.rows[1].images.figure.is_file()
