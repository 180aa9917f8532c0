"""``bratsx serve``: the local web app (upload a case, watch it segment, view it, download it; review a batch)."""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..errors import BratsxError
from ..extras import optional_import
from ..runtime.backends import BackendName
from ..serve.settings import ServeSettings, is_loopback
from .common import console, reports_errors
from .options import LabelsOption, WorkspaceOption, default_of


def _default_model(workspace: Optional[Path], review: bool) -> Optional[Path]:
    """The workspace's default model (else the bundled one), announced as infer announces it; in review mode, none
    when there is none."""
    from .infer import _default_model as infer_default_model

    try:
        return infer_default_model(workspace)
    except BratsxError:
        if not review:
            raise
    console.print("no model found: reviewing only (give --model to segment uploads too)")
    return None


@reports_errors
def serve(
    model: Annotated[Optional[Path], typer.Option(
        "--model", "-m", help="Model that segments uploads: a model folder or file, as bratsx infer takes. "
                              "[default: the workspace's default model, else the bundled one]",
        exists=True, show_default=False)] = None,
    cases: Annotated[Optional[Path], typer.Option(
        "--cases", "-c", help="Review mode: the cases a bratsx infer run segmented.", exists=True, file_okay=False,
        show_default=False)] = None,
    predictions: Annotated[Optional[Path], typer.Option(
        "--predictions", "-p", help="Review mode: that run's output folder; verdicts go to its qc.csv.",
        exists=True, file_okay=False, show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on. Anything but 127.0.0.1/localhost/::1 needs a "
                                           "token (made and printed when --token is not given).")
                    ] = default_of(ServeSettings, "host"),
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = default_of(ServeSettings, "port"),
    token: Annotated[Optional[str], typer.Option(help="Secret every request must carry (the printed address hands "
                                                      "it to the page). [default: none on 127.0.0.1, a new random "
                                                      "one on other addresses]", show_default=False)] = None,
    backend: Annotated[BackendName, typer.Option(case_sensitive=False, help="Inference engine; auto picks the "
                                                 "fastest installed.")] = default_of(ServeSettings, "backend"),
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads, split between --jobs-per-model. "
                                                               "[default: all cores]",
                                                   show_default=False)] = None,
    data_dir: Annotated[Optional[Path], typer.Option(
        "--data-dir", help="Where uploads and results go. [default: a temporary folder, deleted at exit]",
        file_okay=False, show_default=False)] = None,
    max_upload_mb: Annotated[float, typer.Option(min=1, help="Largest upload (MB).")
                             ] = default_of(ServeSettings, "max_upload_mb"),
    max_unzipped_mb: Annotated[float, typer.Option(min=1, help="Most a .zip upload may expand to (MB).")
                               ] = default_of(ServeSettings, "max_unzipped_mb"),
    expire_minutes: Annotated[float, typer.Option(min=0.01, help="Delete a job's files this long after it ends.")
                              ] = default_of(ServeSettings, "expire_minutes"),
    jobs_per_model: Annotated[int, typer.Option(min=1, help="Jobs segmented at once (each holds a case in "
                                                "memory).")] = default_of(ServeSettings, "jobs_per_model"),
    labels: LabelsOption = None,
    max_files: Annotated[int, typer.Option(min=1, help="Most files one upload may hold.")
                         ] = default_of(ServeSettings, "max_files"),
    max_zip_members: Annotated[int, typer.Option(min=1, help="Most entries a .zip upload may hold.")
                               ] = default_of(ServeSettings, "max_zip_members"),
    max_raw_zip_members: Annotated[int, typer.Option(min=1, help="Most entries a .zip of raw scans (prepare) may "
                                                     "hold: a DICOM study is one file per slice.")
                                   ] = default_of(ServeSettings, "max_raw_zip_members"),
    max_queued_jobs: Annotated[int, typer.Option(min=1, help="Most jobs waiting to start; further uploads are "
                                                 "refused until one starts.")] = default_of(ServeSettings,
                                                                                            "max_queued_jobs"),
    workspace: WorkspaceOption = None,
) -> None:
    """Start the web app and print its address: upload a case (four NIfTI files or a .zip of the case folder),
    follow its segmentation, view it in 3D, download the mask, volumes and overlay picture.

    With --cases and --predictions, also review a bratsx infer output case by case (flags as in bratsx
    report) and record pass / fail / comment into PREDICTIONS/qc.csv. Needs the serve extra:
    pip install 'bratsx[serve]'.
    """
    optional_import("uvicorn", "serve", purpose="bratsx serve")
    app = optional_import("bratsx.serve.app", "serve", purpose="bratsx serve")
    AppState = optional_import("bratsx.serve.state", "serve", purpose="bratsx serve", attribute="AppState")
    listen, run_server = app.listen, app.run_server

    generated = token is None and not is_loopback(host)
    token = secrets.token_urlsafe(24) if generated else token
    settings = ServeSettings(
        model=model, backend=backend, threads=threads, host=host, port=port, token=token, data_dir=data_dir,
        max_upload_mb=max_upload_mb, max_unzipped_mb=max_unzipped_mb, expire_minutes=expire_minutes,
        jobs_per_model=jobs_per_model, max_files=max_files, max_zip_members=max_zip_members,
        max_raw_zip_members=max_raw_zip_members, max_queued_jobs=max_queued_jobs, cases_dir=cases,
        predictions_dir=predictions, labels=labels)
    if model is None:
        settings = dataclasses.replace(settings, model=_default_model(workspace, settings.review))
    sock = listen(host, port)  # before anything is opened or printed: a port in use is reported, not announced
    try:
        state = AppState.open(settings)
    except BaseException:
        sock.close()
        raise
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{port}/" + (f"#token={token}" if token else "")
    if generated:
        console.print("a token was made for this server (--host is not a loopback address); share it only with "
                      "its users")
    console.print(f"bratsx serve: open {escape(address)}  (Ctrl-C stops it)")
    try:
        run_server(state, sock)
    finally:
        sock.close()
        state.close()
