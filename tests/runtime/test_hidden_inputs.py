"""The hidden corpus's last three batch-ending inputs, each failing alone in one line.

A FLAIR that is a symlink loop, a disk that fills up while per-case records are written (and stays
full for the rerun), and ``bratsx bench --cases`` given a relative folder.
"""

import errno
import hashlib
import os
from pathlib import Path

import pytest
from standins import CONTRACT, SlowThreshold
from typer.testing import CliRunner

from bratsx.cases import discover_cases
from bratsx.cli import app
from bratsx.runtime.batch import run_batch
from bratsx.runtime.infer import output_path
from bratsx.runtime.runner import Runner
from bratsx.synth import write_synthetic_dataset

runner = CliRunner()


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def _run(batch, out):
    return run_batch(discover_cases(batch), Runner.from_backends([SlowThreshold()], CONTRACT), out).records


@pytest.fixture
def batch(tmp_path):
    write_synthetic_dataset(tmp_path / "cases", cases=3, shape=(40, 40, 32), seed=4)
    return tmp_path / "cases"


def test_a_flair_that_is_a_symlink_loop_fails_alone(batch, tmp_path):
    flair = next(batch.glob("*_001/*_flair.nii.gz"))
    flair.unlink()
    flair.symlink_to(flair.name)  # the link points at itself
    before = _hashes(batch)
    results = _run(batch, tmp_path / "out")
    assert [r.status for r in results] == ["failed", "ok", "ok"]
    assert results[0].error.startswith(f"case {results[0].case_id}, file {flair.name}: ")
    assert "\n" not in results[0].error
    assert not output_path(tmp_path / "out", results[0].case_id).exists()
    assert _hashes(batch) == before and flair.is_symlink()


def _fill_the_disk(monkeypatch, *, images_too: bool):
    """Every record write (and, with ``images_too``, every segmentation write) fails with ENOSPC."""
    import bratsx.atomic as atomic
    import bratsx.imageio as imageio

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "write_bytes_atomic", full)
    for module in ("bratsx.runtime.records", "bratsx.runtime.summary"):
        monkeypatch.setattr(f"{module}.write_bytes_atomic", full)
    if images_too:
        monkeypatch.setattr(imageio.nib, "save", full)


def test_a_full_disk_while_writing_records_fails_each_case_in_one_line_and_leaves_no_output(batch, tmp_path,
                                                                                              monkeypatch):
    _fill_the_disk(monkeypatch, images_too=False)
    out = tmp_path / "out"
    results = _run(batch, out)
    assert [r.status for r in results] == ["failed"] * 3
    for r in results:
        assert r.error == (f"case {r.case_id}: writing its record failed (No space left on device); its output "
                           "was removed")
    assert not [p for p in out.rglob("*") if p.is_file()]  # no segmentation without its record, no partial file


def test_the_cli_on_a_full_disk_says_one_line_per_case_and_again_on_the_rerun(tiny_onnx, batch, tmp_path,
                                                                              monkeypatch):
    out = tmp_path / "out"
    before = _hashes(batch)
    _fill_the_disk(monkeypatch, images_too=False)
    for attempt in ("first run", "rerun on the still-full disk"):
        result = runner.invoke(app, ["infer", str(batch), "--model", str(tiny_onnx), "--backend", "ort", "--out",
                                     str(out)], env={"COLUMNS": "250"})
        assert result.exit_code != 0, attempt
        assert result.exception is None or isinstance(result.exception, SystemExit), attempt
        assert "Traceback" not in result.output, attempt
        said = " ".join(result.output.split())
        assert "3 case(s) failed" in said and said.count("writing its record failed") == 3, attempt
        assert "metrics.csv: cannot write it (No space left on device)" in said, attempt
        assert not [p for p in out.rglob("*") if p.is_file()], attempt
    assert _hashes(batch) == before


def test_bench_cases_given_as_a_relative_folder(tiny_run, tmp_path, monkeypatch):
    write_synthetic_dataset(tmp_path / "c", cases=1, shape=(32, 32, 24), seed=3)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["bench", "--model", str(tiny_run), "--cases", "c", "--backends", "ort",
                                 "--repeat", "1", "--json", "bench.json"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "not a directory" not in result.output
    assert (tmp_path / "bench.json").is_file()
