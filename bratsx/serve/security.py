"""The checks every request passes before the app sees it, in one ASGI middleware.

* **Token** (when the server has one): the ``X-Bratsx-Token`` header, an ``Authorization: Bearer``
  header or the ``bratsx_token`` cookie must hold it (compared in constant time). Opening any page
  with ``?token=...`` once sets the cookie (HttpOnly, SameSite=Strict) and redirects to the page
  without the token in its address.
* **Host** (without a token): only ``127.0.0.1``, ``localhost`` and ``[::1]`` are served, so a web
  page elsewhere cannot reach the app through DNS rebinding.
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
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.exceptions import HTTPException

__all__ = ["COOKIE_NAME", "CSP", "TOKEN_HEADER", "Guard"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE_NAME = "bratsx_token"
TOKEN_HEADER = "x-bratsx-token"
#: What a page of the app may load: only the app's own files (NiiVue's images may be blobs).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
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
    """Whether a request's headers or cookie hold ``token``."""
    candidates = [headers.get(TOKEN_HEADER, "")]
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        candidates.append(authorization[7:].strip())
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except Exception:  # a malformed cookie header carries no token
        cookie = SimpleCookie()
    if COOKIE_NAME in cookie:
        candidates.append(cookie[COOKIE_NAME].value)
    return any(hmac.compare_digest(c.encode(), token.encode()) for c in candidates if c)


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
            if not _carries(headers, self.token):
                await _answer(send, 401, "this bratsx server needs its token: open the address it printed "
                                         "(…/?token=…), or send the X-Bratsx-Token header")
                return
        await self._limited(scope, receive, _with_headers(send, scope["path"].startswith("/api/")))

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.token is None and _host_name(host) not in _LOCAL_HOSTS:
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
    """Answer a ``?token=`` address: the cookie and a redirect to the same page without the token."""
    if not hmac.compare_digest(given.encode(), token.encode()):
        await _answer(send, 401, "wrong token")
        return
    location = scope["path"] + (f"?{urlencode(rest)}" if rest else "")
    cookie = f"{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/"
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode()),
                            (b"cache-control", b"no-store"), *_HEADERS]})
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
