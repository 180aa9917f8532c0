import re
import socket

import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'bratsx[serve]')")

from bratsx.cli import app
from bratsx.serve import app as serve_app

runner = CliRunner()


@pytest.fixture
def started(monkeypatch):
    """Binding and serving replaced: records the address asked for instead of listening there."""
    calls = []

    def listen(host, port):
        calls.append({"host": host, "port": port})
        return socket.socket()  # a socket bound nowhere, closed by serve

    monkeypatch.setattr(serve_app, "listen", listen)
    monkeypatch.setattr(serve_app, "run_server", lambda state, sock: calls[-1].update(served=True))
    return calls


@pytest.fixture
def nothing_bundled(monkeypatch):
    """An install without the bundled model (and an empty workspace): serve has no model of its own."""
    monkeypatch.setattr("bratsx.workspace.bundled_models", lambda: [])


def test_serve_on_another_address_makes_a_token_and_prints_the_address_with_it(started, batch, nothing_bundled):
    cases, predictions = batch
    result = runner.invoke(app, ["serve", "--cases", str(cases), "--predictions", str(predictions), "--host",
                                 "0.0.0.0", "--port", "8123"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "no model found: reviewing only" in result.output and "a token was made" in result.output
    assert re.search(r"open http://0\.0\.0\.0:8123/#token=[A-Za-z0-9_-]{32}", result.output)
    assert started == [{"host": "0.0.0.0", "port": 8123, "served": True}]


def test_serve_with_a_model_on_localhost_needs_no_token(started, model_folder):
    result = runner.invoke(app, ["serve", "--model", str(model_folder), "--backend", "ort"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "open http://127.0.0.1:8000/ " in result.output and "token" not in result.output


@pytest.mark.parametrize("arguments, message", [
    ([], "no model in workspace"),
    (["--cases", "."], "review mode needs both --cases and --predictions"),
])
def test_serve_refuses_what_cannot_work_in_one_line(started, arguments, message, nothing_bundled):
    result = runner.invoke(app, ["serve", *arguments])
    assert result.exit_code == 2 and message in result.output and not started


def test_a_port_in_use_is_reported_in_one_line_and_no_address_is_printed(batch, nothing_bundled):
    """Defect 7: with the port taken, serve printed an address that belonged to the other server."""
    cases, predictions = batch
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = runner.invoke(app, ["serve", "--cases", str(cases), "--predictions", str(predictions), "--port",
                                     str(port)], env={"COLUMNS": "200"})
    assert result.exit_code != 0 and "open http" not in result.output
    assert f"port {port} on 127.0.0.1 is taken" in result.output and "Traceback" not in result.output
