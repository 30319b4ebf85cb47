"""One HTTP request/response over raw ASGI, with prompt client-disconnect detection.

Disconnects are watched lazily: the first time the handler waits (a delay, a slow
chunk, a hang) a task starts reading ASGI ``receive`` for ``http.disconnect``. A
response written without any wait never pays for that task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HeaderList = list[tuple[bytes, bytes]]

JSON_TYPE = (b"content-type", b"application/json")
SSE_HEADERS: HeaderList = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


class ScriptedReset(Exception):
    """Raised inside the ASGI send loop so the server drops the connection mid-body."""


def encode_headers(pairs: Iterable[tuple[str, str]]) -> HeaderList:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]


class Exchange:
    __slots__ = ("_gone", "_watcher", "headers", "path", "query", "receive", "send", "started")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.receive = receive
        self.send = send
        self.path: str = scope["path"]
        self.query: str = scope.get("query_string", b"").decode("latin-1")
        self.headers: dict[str, str] = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        self.started = False
        self._gone: asyncio.Event | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def disconnected(self) -> bool:
        return self._gone is not None and self._gone.is_set()

    async def read_body(self) -> bytes | None:
        """The full request body, or None if the client went away first."""
        first = await self.receive()
        if first["type"] != "http.request":
            return None
        body: bytes = first.get("body", b"")
        if not first.get("more_body", False):
            return body
        parts = [body]
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                return None
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(parts)

    async def respond(self, status: int, body: bytes, headers: HeaderList) -> None:
        """A complete response with a Content-Length."""
        self.started = True
        length = (b"content-length", str(len(body)).encode())
        await self.send(
            {"type": "http.response.start", "status": status, "headers": [*headers, length]}
        )
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    async def respond_json(self, status: int, document: Any, headers: HeaderList) -> None:
        await self.respond(status, orjson.dumps(document), [JSON_TYPE, *headers])

    async def start(self, status: int, headers: HeaderList) -> None:
        """Send the status line and headers of a body sent in pieces (chunked)."""
        self.started = True
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def write(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes = b"") -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": False})

    def _watch(self) -> asyncio.Event:
        if self._gone is None:
            self._gone = asyncio.Event()
            self._watcher = asyncio.get_running_loop().create_task(self._watch_disconnect())
        return self._gone

    async def _watch_disconnect(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                assert self._gone is not None
                self._gone.set()
                return

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False as soon as the client disconnects (True otherwise)."""
        gone = self._watch()
        if gone.is_set():
            return False
        if seconds <= 0:
            return True
        try:
            async with asyncio.timeout(seconds):
                await gone.wait()
        except TimeoutError:
            return True
        return False

    async def wait_disconnect(self) -> None:
        """Wait, however long it takes, until the client goes away."""
        await self._watch().wait()

    def close(self) -> None:
        """Stop watching for a disconnect (the response is over)."""
        if self._watcher is not None:
            self._watcher.cancel()
