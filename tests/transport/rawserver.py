"""A raw TCP server on 127.0.0.1 that plays scripted bytes, one script per connection,
and records what it received: the hostile upstream of the transport conformance suite.

It runs on the test's own event loop, so a ``Flush`` step (drain, then let the loop
run) lets the client read what was sent before the next write: the two writes reach
the client as separate reads, as they would over a real network.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

FLUSH_TURNS = 20


@dataclass(frozen=True)
class Read:
    """Read one HTTP request (head and Content-Length body) and record it."""


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Flush:
    """Drain, then give the client (on the same loop) the turns to read it all."""


@dataclass(frozen=True)
class Wait:
    """Until the test sets ``gate`` (something it observed on the client side)."""

    gate: asyncio.Event


@dataclass(frozen=True)
class Endless:
    """Write ``prefix`` then ``piece`` again and again until the client goes away
    (or ``cap`` bytes, so a broken limit fails the test instead of the machine)."""

    prefix: bytes
    piece: bytes
    cap: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class Close:
    pass


@dataclass(frozen=True)
class Hold:
    """Keep the connection open until the client closes it."""


@dataclass(frozen=True)
class AtEof:
    """Wait for the client to close its sending side, then send ``data`` and close:
    a server that stops generating when its client goes away."""

    data: bytes


Step = Read | Send | Flush | Wait | Endless | Close | Hold | AtEof


@dataclass
class Received:
    connection: int
    head: bytes
    body: bytes

    @property
    def path(self) -> bytes:
        return self.head.split(b" ", 2)[1]

    def header(self, name: bytes) -> bytes | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name:
                return value.strip()
        return None


@dataclass
class RawServer:
    tls: ssl.SSLContext | None = None
    connections: int = 0
    requests: list[Received] = field(default_factory=list)
    received_bytes: int = 0
    sent: list[int] = field(default_factory=list)  # bytes written, per connection
    _scripts: deque[Sequence[Step]] = field(default_factory=deque)
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"

    def script(self, *connections: Sequence[Step]) -> None:
        """What the next connections get, in order (then: read a request, close)."""
        self._scripts.extend(connections)

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self.tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        index = self.connections
        self.connections += 1
        self.sent.append(0)
        script = self._scripts.popleft() if self._scripts else (Read(), Close())
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                for step in script:
                    if not await self._play(step, index, reader, writer):
                        return
                await self._read(index, reader)  # anything more is unexpected: record it
        finally:
            writer.close()
            self._handlers.discard(task)

    async def _play(
        self, step: Step, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Play one step; False when the connection is over."""
        if isinstance(step, Read):
            await self._read(index, reader)
        elif isinstance(step, Send):
            await self._write(index, writer, step.data)
        elif isinstance(step, Flush):
            await writer.drain()
            for _ in range(FLUSH_TURNS):
                await asyncio.sleep(0)
        elif isinstance(step, Wait):
            await step.gate.wait()
        elif isinstance(step, Endless):
            await self._write(index, writer, step.prefix)
            while self.sent[index] < step.cap:
                await self._write(index, writer, step.piece)
        elif isinstance(step, Hold):
            while await reader.read(65536):
                pass
        elif isinstance(step, AtEof):
            while await reader.read(65536):
                pass
            await self._write(index, writer, step.data)
        return not isinstance(step, Close | Hold | Endless | AtEof)

    async def _write(self, index: int, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()
        self.sent[index] += len(data)

    async def _read(self, index: int, reader: asyncio.StreamReader) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            self.received_bytes += len(exc.partial)
            raise
        self.received_bytes += len(head)
        request = Received(index, head, b"")
        length = int(request.header(b"content-length") or 0)
        request.body = await reader.readexactly(length)
        self.received_bytes += length
        self.requests.append(request)


def response(body: bytes = b"{}", *, status: str = "200 OK", headers: bytes = b"") -> bytes:
    """A complete answer with a Content-Length."""
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n".encode()
        + headers
        + b"\r\n"
        + body
    )


def chunk(data: bytes, extension: bytes = b"") -> bytes:
    return f"{len(data):x}".encode() + extension + b"\r\n" + data + b"\r\n"


CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
LAST_CHUNK = b"0\r\n\r\n"
