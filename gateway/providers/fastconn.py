"""One keep-alive HTTP/1.1 connection of the lean pool (``fasthttp``): an asyncio
Protocol feeding httptools' C parser, one request at a time.

What it guards against (each a way an upstream could desynchronise or exhaust us):

* 1xx answers (``100 Continue``, ``103 Early Hints``, any number of them) are
  skipped: only the final answer's status and headers count.
* Bytes after the final answer's end (a second, unsolicited answer) close the
  connection at once: it never goes back to the pool with bytes pending.
* A body without Content-Length or chunked encoding ends when the server closes.
* Headers are bounded (``max_head`` bytes in all, 1xx and trailers included), and so
  is any run of reads that completes no header and delivers no body byte (a header,
  trailer or chunk extension without end), which httptools would keep concatenating.
"""

from __future__ import annotations

import asyncio

import httptools
import httpx

HIGH_WATER = 256 * 1024


class _Stop(Exception):
    """Raised from a parser callback to stop parsing; ``error`` says why."""


class Conn(asyncio.Protocol):
    def __init__(self, origin: tuple[bytes, str, int], max_head: int) -> None:
        self.origin = origin
        self.max_head = max_head
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.aborted = False  # closed by us (not by the peer)
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self.reset()

    def reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.stalled = 0
        self.progress = False
        self.informational = False
        self.headers_done = False
        self.message_done = False
        self.keep_alive = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.error: Exception | None = None

    # asyncio.Protocol ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.progress = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.error is None and not self.message_done:
                self.error = httpx.RemoteProtocolError(f"malformed response: {exc}")
            self.close()
        if not self.progress:
            self._stall(len(data))
        elif self.stalled:
            self.stalled = 0
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def _stall(self, size: int) -> None:
        self.stalled += size
        if self.stalled > self.max_head and not self.closed:
            self.error = httpx.RemoteProtocolError(
                f"the upstream sent {self.stalled} bytes completing no header and no body"
            )
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.message_done and self.error is None:
            if not self.headers_done:
                self.error = httpx.RemoteProtocolError("server disconnected without a response")
            elif exc is None and not _framed(self.headers):
                self.message_done = True  # the body is delimited by the close
            else:
                self.error = httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body"
                )
        self._wake()

    # httptools callbacks -----------------------------------------------------
    def on_message_begin(self) -> None:
        if self.message_done:  # bytes after the answer's end: never pool this
            raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        self.progress = True
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > self.max_head:
            self.error = httpx.RemoteProtocolError(f"response headers exceed {self.max_head} bytes")
            raise _Stop
        if not self.headers_done:  # trailers are counted, not kept
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.progress = True
        status = self.parser.get_status_code()
        if status < 200:
            if status == 101:
                self.error = httpx.RemoteProtocolError("unexpected 101 Switching Protocols")
                raise _Stop
            self.informational = True  # 1xx: wait for the final answer
            self.headers.clear()
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.progress = True
        self.chunks.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        self.progress = True
        if self.informational:
            self.informational = False
            return
        self.message_done = True

    # used by the pool and its responses --------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        if not self.closed:
            self.aborted = True
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def fail(self, error: Exception) -> Exception:
        """Record ``error``, close, and return it (to raise)."""
        if self.error is None:
            self.error = error
        self.close()
        return self.error

    async def wait(self, limit_s: float | None) -> None:
        """Until something happens on the connection, at most ``limit_s`` seconds."""
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        handle = None
        if limit_s is not None:
            handle = loop.call_later(limit_s, _expire, self._waiter)
        try:
            await self._waiter
        finally:
            self._waiter = None
            if handle is not None:
                handle.cancel()

    def take(self) -> bytes:
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout("timed out waiting for the upstream"))


def _framed(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the body has a length of its own (else the close ends it)."""
    return any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in headers)
