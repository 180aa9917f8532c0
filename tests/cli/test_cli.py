import numpy as np
import pytest
from casefiles import SMALL_SHAPE, save, write_folder_case
from typer.testing import CliRunner

from bratsx import __version__
from bratsx.cases import Layout
from bratsx.cli import app
from bratsx.errors import BratsxError

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"bratsx {__version__}"


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "synth" in result.output and "cases" in result.output


def test_synth_then_cases_lists_what_was_written(tmp_path):
    result = runner.invoke(app, ["synth", str(tmp_path), "--cases", "2", "--shape", "32", "32", "24",
                                 "--layout", "brats2023", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 brats2023 case(s)" in result.output
    listing = runner.invoke(app, ["cases", str(tmp_path)], env={"COLUMNS": "200"})
    assert listing.exit_code == 0, listing.output
    assert "BraTS-SYN-00001-000" in listing.output and "BraTS-SYN-00002-000" in listing.output
    assert "32x32x24" in listing.output and "LPS" in listing.output


def test_cases_reports_a_broken_case_and_exits_1(tmp_path):
    write_folder_case(tmp_path, Layout.BRATS2020, "BraTS20_Training_001")
    broken = write_folder_case(tmp_path, Layout.BRATS2020, "BraTS20_Training_002")
    (broken / "BraTS20_Training_002_t1.nii.gz").unlink()
    result = runner.invoke(app, ["cases", str(tmp_path)], env={"COLUMNS": "250"})
    assert result.exit_code == 1
    assert "missing T1 image" in result.output
    assert "1 of 2 case(s) have problems" in result.output


def test_cases_check_reads_voxels(tmp_path):
    folder = write_folder_case(tmp_path, Layout.PLAIN, "case_1")
    save(np.zeros(SMALL_SHAPE, np.int16), folder / "t1.nii.gz")  # a valid header over empty voxels
    assert runner.invoke(app, ["cases", str(tmp_path)]).exit_code == 0
    result = runner.invoke(app, ["cases", str(tmp_path), "--check"], env={"COLUMNS": "250"})
    assert result.exit_code == 1
    assert "T1 is all zeros" in result.output


def test_user_error_is_one_red_line_with_exit_code_2(tmp_path):
    result = runner.invoke(app, ["cases", str(tmp_path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "no BraTS case found" in lines[0]
    assert "Traceback" not in result.output


def test_debug_shows_the_exception(tmp_path):
    result = runner.invoke(app, ["--debug", "cases", str(tmp_path)])
    assert isinstance(result.exception, BratsxError)


def test_synth_refuses_to_overwrite(tmp_path):
    args = ["synth", str(tmp_path), "-n", "1", "--shape", "32", "32", "24"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


@pytest.mark.parametrize("args", [["synth", "x", "--layout", "brats1999"], ["synth", "x", "--cases", "0"]])
def test_bad_options_are_usage_errors(args):
    assert runner.invoke(app, args).exit_code == 2


def test_train_then_resume_through_the_cli(tmp_path):
    pytest.importorskip("torch")
    data = tmp_path / "data"
    assert runner.invoke(app, ["synth", str(data), "-n", "3", "--shape", "32", "32", "24"]).exit_code == 0
    run = tmp_path / "run"
    args = ["train", str(data), "--out", str(run), "--cache-dir", str(tmp_path / "cache"), "--epochs", "1",
            "--iterations", "2", "--patch", "16", "16", "16", "--features", "4,8", "--val-fraction", "0.34",
            "--workers", "0", "--gpus", "0"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "best validation Dice" in result.output and "completed" in result.output
    again = runner.invoke(app, ["train", str(data), "--out", str(run), "--resume", "--epochs", "2"],
                          env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert "4 (2 epoch(s))" in again.output  # the saved options (2 iterations per epoch) were kept


def test_train_refuses_a_patch_the_network_cannot_take(tmp_path):
    pytest.importorskip("torch")
    data = tmp_path / "data"
    runner.invoke(app, ["synth", str(data), "-n", "2", "--shape", "32", "32", "24"])
    result = runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "run"), "--patch", "20", "16", "16"])
    assert result.exit_code == 2
    assert "multiple of 8" in result.output
