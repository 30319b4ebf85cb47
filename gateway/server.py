"""The HTTP server's own limits: what a client can make the gateway hold open.

uvicorn's httptools protocol, with two guards a public gateway needs:

- a **header deadline**: a connection must finish a request's headers within
  ``server.header_timeout_s`` of opening (or of starting its next request), so slowloris
  connections that trickle bytes, or send nothing at all, are closed with a 408;
- a **connection cap**: past ``server.max_connections`` open connections a new one is
  answered 503 at once and closed, so idle connections cannot take every file
  descriptor and lock every client out.

Idle keep-alive connections are closed after ``server.keep_alive_timeout_s`` (uvicorn's
own timer). The limits are process-wide (``configure``, called by the app at start):
every worker process builds its app before it accepts a connection.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.config import ServerConfig

_limits = ServerConfig()


def _answer(status: bytes, code: str, message: str, kind: str, extra: bytes = b"") -> bytes:
    body = json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": code}}
    ).encode()
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
        + extra
        + b"content-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


_FULL = _answer(
    b"503 Service Unavailable",
    "too_many_connections",
    "the gateway has too many open connections; try again shortly",
    "service_unavailable",
    b"retry-after: 1\r\n",
)
_SLOW = _answer(
    b"408 Request Timeout",
    "request_timeout",
    "the request headers did not arrive in time",
    "invalid_request_error",
)
_BAD = _answer(
    b"400 Bad Request",
    "invalid_request",
    "the request is not valid HTTP (a header name or value with forbidden characters?)",
    "invalid_request_error",
)


def configure(limits: ServerConfig) -> None:
    global _limits
    _limits = limits


def limits() -> ServerConfig:
    return _limits


class GuardedHttpTools(HttpToolsProtocol):
    """See the module docstring. The header deadline costs a request two attribute
    writes: one sweep per process checks every waiting connection a few times per
    deadline, instead of a timer per request."""

    _waiting_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > _limits.max_connections:
            transport.write(_FULL)
            transport.close()
            return
        self._waiting_since = self.loop.time()
        state = self.server_state
        if not getattr(state, "spendgate_sweeping", False):  # one sweep per server
            state.spendgate_sweeping = True  # type: ignore[attr-defined]
            self.loop.call_later(_sweep_every(), _sweep, self.loop, self.connections)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._waiting_since is None:
            self._waiting_since = self.loop.time()

    def on_headers_complete(self) -> None:
        self._waiting_since = None
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """Malformed HTTP gets the gateway's JSON error shape too, not plain text."""
        self.transport.write(_BAD)
        self.transport.close()

    def too_slow(self, now: float) -> bool:
        since = self._waiting_since
        return since is not None and now - since > _limits.header_timeout_s

    def cut(self) -> None:
        self._waiting_since = None
        if not self.transport.is_closing():
            self.transport.write(_SLOW)
            self.transport.close()


def _sweep_every() -> float:
    return min(1.0, _limits.header_timeout_s / 4)


def _sweep(loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
    """Close every connection whose headers are overdue, then look again later."""
    now = loop.time()
    for conn in list(connections):
        if isinstance(conn, GuardedHttpTools) and conn.too_slow(now):
            conn.cut()
    if loop.is_closed():
        return
    loop.call_later(_sweep_every(), _sweep, loop, connections)
