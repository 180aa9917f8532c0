"""Every class of the hostile corpus (tests/hostile.py) through discovery, loading and ``bratsx cases --check``.

Each bad input gives exactly one line naming the case and the file, never a traceback, and no
input byte changes; odd but valid inputs load.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from hostile import CORPUS, Expect, Hostile, write_batch
from typer.testing import CliRunner

from bratsx.cases import discover, discover_cases
from bratsx.cli import app
from bratsx.cli.common import console, literal
from bratsx.errors import BratsxError, CaseError, LabelError
from bratsx.imageio import load_case

runner = CliRunner()


def classes(*expected: Expect) -> list:
    return [pytest.param(h, id=name) for name, h in CORPUS.items() if not expected or h.expect in expected]


@pytest.fixture
def written(tmp_path: Path, monkeypatch):
    """Write a class into an empty folder; a folder it wants unlisted raises PermissionError when listed."""

    def write(hostile: Hostile) -> Path:
        root = tmp_path / "corpus"
        root.mkdir()
        hostile.write(root)
        if hostile.unlisted:
            denied, iterdir = root / hostile.unlisted, Path.iterdir

            def refusing_iterdir(self: Path):
                if self == denied:
                    raise PermissionError(13, "Permission denied", str(self))
                return iterdir(self)

            monkeypatch.setattr(Path, "iterdir", refusing_iterdir)
        return root

    return write


def the_case(root: Path, case_id: str):
    [case] = [c for c in discover_cases(root) if c.case_id == case_id]
    return case


def assert_one_line_naming(error: BratsxError, hostile: Hostile) -> None:
    text = str(error)
    assert "\n" not in text
    assert hostile.culprit in text and hostile.message in text
    if isinstance(error, CaseError):
        assert error.case_id == hostile.case_id and f"case {hostile.case_id}" in text


@pytest.mark.parametrize("hostile", classes(Expect.CASE_ERROR))
def test_a_bad_case_fails_to_load_with_one_line_naming_it_and_the_file(written, hostile):
    case = the_case(written(hostile), hostile.case_id)
    with pytest.raises(CaseError) as caught:
        load_case(case, with_label=False)
    assert not isinstance(caught.value, LabelError)
    assert_one_line_naming(caught.value, hostile)


@pytest.mark.parametrize("hostile", classes(Expect.LABEL_ERROR))
def test_a_bad_reference_is_a_label_error_and_the_images_still_load(written, hostile):
    case = the_case(written(hostile), hostile.case_id)
    with pytest.raises(LabelError) as caught:
        load_case(case)
    assert_one_line_naming(caught.value, hostile)
    assert load_case(case, with_label=False).label is None


@pytest.mark.parametrize("hostile", classes(Expect.LOADS))
def test_odd_but_valid_inputs_load_finite_float32(written, hostile):
    loaded = load_case(the_case(written(hostile), hostile.case_id))
    assert loaded.image.dtype == np.float32
    assert loaded.image.shape == (4, *loaded.geometry.canonical_shape)
    assert np.isfinite(loaded.image).all()


@pytest.mark.parametrize("hostile", classes(Expect.DISCOVERY_ERROR))
def test_ids_that_would_share_an_output_are_refused_at_discovery_in_one_line(written, hostile):
    with pytest.raises(BratsxError) as caught:
        discover_cases(written(hostile))
    assert_one_line_naming(caught.value, hostile)


@pytest.mark.parametrize("hostile", classes(Expect.SKIPPED))
def test_skipped_folders_are_reported_with_their_reason(written, hostile):
    found = discover(written(hostile))
    assert [(s.path.name, hostile.message in s.reason) for s in found.skipped] == [(hostile.culprit, True)]
    assert [c.case_id for c in found.cases] == ["visible_case"]


def test_a_mixed_batch_loads_every_good_case_and_fails_every_bad_one_alone(tmp_path):
    written = write_batch(tmp_path)
    outcomes = {}
    for case in discover_cases(tmp_path):
        try:
            load_case(case)
            outcomes[case.case_id] = Expect.LOADS
        except LabelError:
            outcomes[case.case_id] = Expect.LABEL_ERROR
        except CaseError as error:
            assert error.case_id == case.case_id and "\n" not in str(error)
            outcomes[case.case_id] = Expect.CASE_ERROR
    assert outcomes == {name: hostile.expect for name, hostile in written.items()}
    assert len(written) > 40


EXIT_CODES = {Expect.LOADS: 0, Expect.SKIPPED: 0, Expect.CASE_ERROR: 1, Expect.LABEL_ERROR: 1,
              Expect.DISCOVERY_ERROR: 2}


@pytest.mark.parametrize("hostile", classes())
def test_cases_check_gives_one_line_per_case_and_no_traceback(written, hostile, monkeypatch):
    monkeypatch.setattr(console, "width", 4000)  # one table row per line, however long the message
    result = runner.invoke(app, ["cases", "--check", str(written(hostile))])
    assert result.exit_code == EXIT_CODES[hostile.expect], result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    if hostile.expect is Expect.DISCOVERY_ERROR:
        assert len(lines) == 1 and lines[0].startswith("error: ")
        assert hostile.culprit in lines[0] and hostile.message in lines[0]
    elif hostile.expect is Expect.SKIPPED:
        [line] = [line for line in lines if line.startswith("skipped ")]
        assert hostile.culprit in line and hostile.message in line
    else:
        shown_id = literal(hostile.case_id).plain
        [row] = [line for line in lines if f" {shown_id} " in line]
        assert (hostile.message in row and hostile.culprit in row) if hostile.message else " ok " in row


def file_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every regular file under ``root`` (links followed where they lead to one)."""
    hashes = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            if path.is_file():
                hashes[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


@pytest.mark.parametrize("hostile", classes())
def test_no_input_byte_changes(written, hostile):
    root = written(hostile)
    before = file_hashes(root)
    for case in discover(root).cases if hostile.expect is not Expect.DISCOVERY_ERROR else ():
        for with_label in (True, False):
            try:
                load_case(case, with_label=with_label)
            except CaseError:
                pass
    runner.invoke(app, ["cases", "--check", str(root)])
    assert file_hashes(root) == before


# --- model files -----------------------------------------------------------------------------------


def onnx_without_contract() -> bytes:
    onnx = pytest.importorskip("onnx")
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                   [value("x", onnx.TensorProto.FLOAT, [1])], [value("y", onnx.TensorProto.FLOAT, [1])])
    return onnx.helper.make_model(graph).SerializeToString()


@pytest.mark.parametrize("content,message", [
    (b"", "empty file (0 bytes), not an ONNX model"),
    (b"hello, not a model\n" * 10, "not an ONNX model (its bytes do not parse as one"),
    (None, "cannot read the model file (Is a directory)"),
    ("truncated", "not an ONNX model"),
    ("bare", "no bratsx contract in the model's metadata"),
])
def test_a_bad_model_file_is_one_line_saying_what_it_is(tmp_path, content, message):
    from bratsx.contract import read_onnx_contract

    path = tmp_path / "model.onnx"
    if content is None:
        path.mkdir()
    else:
        model = onnx_without_contract()
        path.write_bytes({"truncated": model[: len(model) // 2], "bare": model}.get(content, content))
    with pytest.raises(BratsxError) as caught:
        read_onnx_contract(path)
    assert str(caught.value).startswith(f"{path}: {message}") and "\n" not in str(caught.value)
