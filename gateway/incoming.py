"""The request as the proxy endpoints see it: a Starlette ``Request`` off the hot path,
and on it (``gateway.app.FastPath``) a lighter one whose headers are read into a dict
once, instead of a scan of the raw header list per lookup."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope


class Incoming(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def app(self) -> Any: ...

    def stream(self) -> AsyncIterator[bytes]: ...


def header_map(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI headers (names already lower-case) by name; of a repeated header the first
    counts, as with Starlette's ``Headers.get``."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1")
        if key not in headers:
            headers[key] = value.decode("latin-1")
    return headers


class HotRequest:
    __slots__ = ("_receive", "app", "headers", "scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.app = scope["app"]
        self.headers = header_map(scope["headers"])
        self._receive = receive

    async def stream(self) -> AsyncIterator[bytes]:
        """The body's chunks as they come (Starlette's ``Request.stream`` semantics)."""
        while True:
            message = await self._receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                if body:
                    yield body
                if not message.get("more_body", False):
                    return
            elif message["type"] == "http.disconnect":
                raise ClientDisconnect()
