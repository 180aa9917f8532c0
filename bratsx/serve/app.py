"""The FastAPI application: three routers (jobs, viewer and files, review), the guard, the static files.

Build it from an :class:`~bratsx.serve.state.AppState`; the app starts the job queue when it starts
and closes the state (queue, model, temporary folder) when it stops.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..errors import BratsxError
from .routes import files, jobs, review
from .security import Guard
from .state import AppState

__all__ = ["create_app", "listen", "run_server", "serving"]


def create_app(state: AppState) -> FastAPI:
    """The app serving ``state``.

    Args:
        state: from :meth:`AppState.open`; the app owns it from now on and closes it at shutdown.

    Returns:
        An ASGI application (run it with uvicorn, or test it with FastAPI's ``TestClient``).
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            state.close()

    app = FastAPI(title="bratsx", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.bratsx = state
    app.include_router(jobs.router)
    app.include_router(files.router)
    app.include_router(review.router)
    app.mount("/static", StaticFiles(directory=files.STATIC_DIR), name="static")
    app.add_middleware(Guard, token=state.settings.token, max_body=state.settings.max_upload_bytes)
    return app


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, before anything is printed: an address in use is reported, never announced.

    Raises:
        BratsxError: the port is taken (another server listens there) or the address cannot be used.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: no wait after a restart
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise BratsxError(f"port {port} on {host} is taken: another server listens there; choose another "
                              "--port") from None
        raise BratsxError(f"cannot listen on {host}:{port} ({error.strerror or error})") from None
    return sock


def _server(state: AppState) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(create_app(state), log_level="warning"))


def run_server(state: AppState, sock: socket.socket) -> None:
    """Serve ``state`` on the bound ``sock`` until interrupted (``bratsx serve``)."""
    _server(state).run(sockets=[sock])


@contextmanager
def serving(state: AppState, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 30.0) -> Iterator[str]:
    """Serve ``state`` with uvicorn in a background thread of this process (tests, measurements).

    Args:
        state: from :meth:`AppState.open` (closed when the server stops).
        host: address to bind.
        port: TCP port (0: a free one).
        timeout_s: longest wait for the server to start.

    Yields:
        The server's address, ``http://host:port``.

    Raises:
        RuntimeError: the server did not start in time.
    """
    sock = listen(host, port)
    server = _server(state)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="bratsx-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the server did not start within {timeout_s:g} s")
            time.sleep(0.02)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout_s)
        sock.close()
