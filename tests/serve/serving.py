"""Helpers of the web app's tests: an app in-process (TestClient) or live (uvicorn on a free port), uploads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'bratsx[serve]')")
from fastapi.testclient import TestClient

from bratsx.serve.app import create_app, serving
from bratsx.serve.settings import ServeSettings
from bratsx.serve.state import AppState

#: A case id that is HTML: every page must show it as text, never run it.
HOSTILE_ID = '<img src=x onerror="window.pwned=1">'

#: Where TestClient's requests claim to go (the guard serves only local host names without a token).
LOCAL = "http://127.0.0.1:8000"


@contextmanager
def client(**settings: Any) -> Iterator[TestClient]:
    """A TestClient of an app built from ``settings`` (the app's lifespan runs: queue started, then closed)."""
    state = AppState.open(ServeSettings(**settings))
    with TestClient(create_app(state), base_url=LOCAL) as test_client:
        yield test_client


@contextmanager
def live_server(**settings: Any) -> Iterator[str]:
    """The app served by uvicorn on 127.0.0.1 on a free port, in this process; yields its address."""
    with serving(AppState.open(ServeSettings(**settings))) as address:
        yield address


def case_files(folder: Path, with_label: bool = False) -> list[Path]:
    """The NIfTI files of a case folder (without the reference unless asked)."""
    return sorted(p for p in folder.iterdir() if p.name.endswith((".nii", ".nii.gz"))
                  and (with_label or "seg" not in p.name))


def upload(test_client: TestClient, files: list[Path], roles: list[str] | None = None, **form: str):
    """POST the files to /api/jobs (with their roles when given); returns the response."""
    data = {**form, **({"roles": roles} if roles is not None else {})}
    return test_client.post("/api/jobs", files=[("files", (p.name, p.read_bytes())) for p in files], data=data)


def wait_for_job(test_client: TestClient, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll a job until it is done or failed; returns its last state."""
    deadline = time.monotonic() + timeout
    while True:
        job = test_client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job still {job['state']} after {timeout} s")
        time.sleep(0.05)
