"""``bratsx cases``: untrusted names shown as written, and what discovery skipped shown with why."""

import pytest
from casefiles import write_folder_case
from typer.testing import CliRunner

from bratsx.cases import Layout
from bratsx.cli import app
from bratsx.cli.common import console, literal

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(console, "width", 400)


@pytest.mark.parametrize("case_id,shown", [
    ("[bold red]x", "[bold red]x"),
    ("a :thumbs_up: [i]b", "a :thumbs_up: [i]b"),
    ("new\nline\x1b[31m", "new\\nline\\x1b[31m"),
])
def test_case_ids_are_shown_literally(tmp_path, case_id, shown):
    write_folder_case(tmp_path, Layout.PLAIN, case_id, label_values=None)
    result = runner.invoke(app, ["cases", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f" {shown} " in result.output


def test_literal_escapes_control_characters_and_parses_nothing():
    text = literal("[red]x :smile:\n\x1b", "bold")
    assert text.plain == "[red]x :smile:\\n\\x1b" and str(text.style) == "bold"


def test_an_error_line_shows_markup_in_names_literally(tmp_path):
    folder = tmp_path / "[red]study :smile:"
    folder.mkdir()
    result = runner.invoke(app, ["cases", str(folder)])
    assert result.exit_code == 2
    assert result.output == f"error: {folder}: no BraTS case found (expected case folders with FLAIR, T1, T1ce and " \
                            "T2 NIfTI files, or an MSD dataset with imagesTr/)\n"


def test_skipped_folders_are_listed_with_their_reason(tmp_path):
    write_folder_case(tmp_path, Layout.PLAIN, "case_1", label_values=None)
    write_folder_case(tmp_path, Layout.PLAIN, ".case_2", label_values=None)
    result = runner.invoke(app, ["cases", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"skipped {tmp_path / '.case_2'}: hidden folder (its name starts with '.')" in result.output
