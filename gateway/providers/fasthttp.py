"""A lean HTTP/1.1 transport for the shared ``httpx.AsyncClient``.

httpx's default transport (httpcore over anyio, with the pure-Python h11 parser) costs
more CPU per upstream call than the whole rest of the gateway. This transport keeps
httpx's client API and error types but does the wire work with an asyncio Protocol and
httptools' C parser: pooled keep-alive connections per origin, streamed bodies with
back-pressure, and httpx's connect/read/pool timeouts.

Errors raised are httpx's own (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``,
``RemoteProtocolError``, ``PoolTimeout``), so callers classify them exactly as before.
A request that fails on a *reused* connection before any response byte arrived (the
server closed it while idle) is retried once on a fresh connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httptools
import httpx

HIGH_WATER = 256 * 1024
SIZE_HINT = 64


class _Conn(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, origin: tuple[bytes, str, int]) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._waiter: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.message_done = False
        self.any_byte = False
        self.keep_alive = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self.error: Exception | None = None

    # asyncio.Protocol ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.any_byte = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = httpx.RemoteProtocolError(f"malformed response: {exc}")
            self._close()
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.message_done and self.error is None:
            if not self.headers_done:
                self.error = httpx.RemoteProtocolError("server disconnected without a response")
            else:
                self.error = httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body"
                )
        self._wake()

    # httptools callbacks -----------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        self.message_done = True

    # used by the transport ---------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

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
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout("timed out waiting for the upstream"))


class _Body(httpx.AsyncByteStream):
    def __init__(self, transport: FastTransport, conn: _Conn, read_timeout: float | None) -> None:
        self._transport = transport
        self._conn = conn
        self._timeout = read_timeout
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if conn.chunks:
                yield conn.take()
                continue
            if conn.message_done:
                self._finish()
                return
            if conn.error is not None:
                raise conn.error
            await conn.wait(self._timeout)

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._transport.release(self._conn)

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            if not self._conn.message_done:
                self._conn._close()
            self._transport.release(self._conn)


class FastTransport(httpx.AsyncBaseTransport):
    def __init__(
        self, max_connections: int = 200, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._idle: dict[tuple[bytes, str, int], list[_Conn]] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._ssl = ssl_context
        self._busy: set[_Conn] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        await self._acquire_slot(timeouts.get("pool"))
        try:
            return await self._send(request, timeouts)
        except BaseException:
            self._slots.release()
            raise

    async def _acquire_slot(self, limit_s: float | None) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            async with asyncio.timeout(limit_s):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no upstream connection free in time") from None

    async def _send(self, request: httpx.Request, timeouts: dict[str, Any]) -> httpx.Response:
        payload = _serialise(request)
        conn = await self._connection(request.url, timeouts.get("connect"))
        try:
            await self._exchange(conn, payload, timeouts.get("read"))
        except httpx.RemoteProtocolError:
            if not (conn.reused and not conn.any_byte):
                raise
            conn = await self._new_connection(request.url, timeouts.get("connect"))
            await self._exchange(conn, payload, timeouts.get("read"))
        return httpx.Response(
            conn.status,
            headers=conn.headers,
            stream=_Body(self, conn, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1"},
            request=request,
        )

    async def _exchange(self, conn: _Conn, payload: bytes, limit_s: float | None) -> None:
        self._busy.add(conn)
        assert conn.transport is not None
        conn.transport.write(payload)
        try:
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(limit_s)
        except BaseException:
            self._busy.discard(conn)
            conn._close()
            raise

    async def _connection(self, url: httpx.URL, limit_s: float | None) -> _Conn:
        idle = self._idle.get(_origin(url))
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.reused = True
                conn._reset()
                return conn
        return await self._new_connection(url, limit_s)

    async def _new_connection(self, url: httpx.URL, limit_s: float | None) -> _Conn:
        origin = _origin(url)
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        ssl_ctx = (self._ssl or ssl.create_default_context()) if scheme == b"https" else None
        try:
            async with asyncio.timeout(limit_s):
                _, conn = await loop.create_connection(
                    lambda: _Conn(origin),
                    host,
                    port,
                    ssl=ssl_ctx,
                    server_hostname=host if ssl_ctx else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from None
        return conn

    def release(self, conn: _Conn) -> None:
        """A response is done with ``conn``: back to the pool, or closed."""
        if conn in self._busy:
            self._busy.discard(conn)
            self._slots.release()
        if conn.closed or not conn.message_done or not conn.keep_alive:
            conn._close()
            return
        self._idle.setdefault(conn.origin, []).append(conn)

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn._close()
        self._idle.clear()
        for conn in list(self._busy):
            conn._close()


def _origin(url: httpx.URL) -> tuple[bytes, str, int]:
    scheme = url.raw_scheme
    port = url.port or (443 if scheme == b"https" else 80)
    return scheme, url.host, port


def _serialise(request: httpx.Request) -> bytes:
    target = request.url.raw_path
    lines = [request.method.encode(), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        lines += [name, b": ", value, b"\r\n"]
    lines.append(b"\r\n")
    content = request.content  # a bytes body (the gateway never streams uploads)
    return b"".join(lines) + content
