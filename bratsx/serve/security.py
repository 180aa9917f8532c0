"""The checks every request passes before the app sees it, in one ASGI middleware.

* **Token** (when the server has one): every ``/api/`` request must carry it in the ``X-Bratsx-Token``
  header or an ``Authorization: Bearer`` header (compared in constant time). The page and its static
  files (the app's own code, no data) are served without it. The page keeps the token in the
  browser's ``localStorage``, which belongs to one origin (scheme, host **and port**): no cookie
  holds it, since cookies are not bound to a port and would reach every other service on the same
  host. The printed address carries it in the fragment (``/#token=...``, never sent to a server);
  ``?token=...`` is accepted too, checked, and redirected to the fragment form.
* **Host** (without a token): only loopback names are served (``localhost``, ``127.0.0.0/8``,
  ``[::1]``), so a web page elsewhere cannot reach the app through DNS rebinding.
* **Origin**: a request that changes something (POST, PUT, PATCH, DELETE) from a page of another
  origin is refused, so no other site can submit jobs or verdicts through the user's browser.
* **Size**: a request body larger than the limit is refused, by its ``Content-Length`` before
  anything is read, or while it streams in.
* **Headers**: every response forbids framing, sniffing, referrers and (``Content-Security-Policy``)
  any script, style, image or connection not served by the app itself; API answers are not cached.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from starlette.exceptions import HTTPException

from .settings import is_loopback

__all__ = ["CSP", "TOKEN_HEADER", "Guard"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_HEADER = "x-bratsx-token"
#: What a page of the app may load: only the app's own files (NiiVue's images may be blobs).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
#: What is served without the token: the page and its static files (code, no data).
_PUBLIC_PREFIXES = ("/static/",)
_PUBLIC_PATHS = ("/",)
_UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"), (b"content-security-policy", CSP.encode())]


class _TooLarge(HTTPException):
    """The body streamed past the limit (an HTTP error, so that FastAPI's body parsing passes it on as one)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit))


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _host_name(host: str) -> str:
    """``127.0.0.1`` of ``127.0.0.1:8000``, ``[::1]`` of ``[::1]:8000``."""
    if host.startswith("["):
        return host[: host.index("]") + 1] if "]" in host else host
    return host.split(":", 1)[0]


def _carries(headers: dict[str, str], token: str) -> bool:
    """Whether a request's headers hold ``token``."""
    candidates = [headers.get(TOKEN_HEADER, "")]
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        candidates.append(authorization[7:].strip())
    return any(hmac.compare_digest(c.encode(), token.encode()) for c in candidates if c)


def _public(scope: Scope) -> bool:
    """Whether a request reads the page or its static files (served without the token)."""
    path = scope["path"]
    return scope["method"] in ("GET", "HEAD") and (path in _PUBLIC_PATHS or path.startswith(_PUBLIC_PREFIXES))


class Guard:
    """The middleware (see the module docstring).

    Args:
        app: the application it guards.
        token: the secret requests must carry, or ``None`` (then only local host names are served).
        max_body: largest request body, in bytes.
    """

    def __init__(self, app: ASGIApp, token: str | None, max_body: int) -> None:
        self.app, self.token, self.max_body = app, token, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await _answer(send, *refusal)
            return
        if self.token is not None:
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            given = [v for k, v in query if k == "token"]
            if given:
                await _token_login(scope, send, self.token, given[-1], [(k, v) for k, v in query if k != "token"])
                return
            if not _public(scope) and not _carries(headers, self.token):
                await _answer(send, 401, "this bratsx server needs its token: open the address it printed "
                                         "(…/#token=…), or send the X-Bratsx-Token header")
                return
        await self._limited(scope, receive, _with_headers(send, scope["path"].startswith("/api/")))

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.token is None and not is_loopback(_host_name(host).strip("[]")):
            return 403, f"host {host!r} is not served: open the app at http://127.0.0.1 (or give the server --token)"
        origin = headers.get("origin")
        if scope["method"] in _UNSAFE_METHODS and origin is not None and origin.split("://", 1)[-1] != host:
            return 403, "requests from pages of another origin are refused"
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return 413, _too_large(self.max_body)
        return None

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _TooLarge(self.max_body)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge as error:
            if started:
                raise
            await _answer(send, 413, error.detail)


async def _token_login(scope: Scope, send: Send, token: str, given: str, rest: list[tuple[str, str]]) -> None:
    """Answer a ``?token=`` address: a redirect to the same page with the token in the fragment (no cookie)."""
    if not hmac.compare_digest(given.encode(), token.encode()):
        await _answer(send, 401, "wrong token")
        return
    location = scope["path"] + (f"?{urlencode(rest)}" if rest else "") + f"#token={quote(token)}"
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("latin-1")), (b"cache-control", b"no-store"), *_HEADERS]})
    await send({"type": "http.response.body", "body": b""})


def _too_large(limit: int) -> str:
    return (f"upload larger than this server's limit of {limit / (1024 * 1024):.0f} MB (bratsx serve "
            "--max-upload-mb)")


def _with_headers(send: Send, no_store: bool) -> Send:
    """``send`` adding the security headers (and ``Cache-Control: no-store``) to the response."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            extra = [*_HEADERS, *([(b"cache-control", b"no-store")] if no_store else [])]
            names = {name for name, _ in extra}
            message["headers"] = [*(h for h in message.get("headers", []) if h[0].lower() not in names), *extra]
        await send(message)

    return wrapped


async def _answer(send: Send, status: int, message: str) -> None:
    """A JSON error answer ``{"detail": message}``, as FastAPI's own."""
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), *_HEADERS]})
    await send({"type": "http.response.body", "body": body})
