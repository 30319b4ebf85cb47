"""A lean, pooled HTTP/1.1 client for upstream calls.

httpx (httpcore over anyio, the pure-Python h11 parser, cookies, redirects, auth
hooks) cost more CPU per upstream call than the whole rest of the gateway. This pool
does only what the gateway needs, with an asyncio Protocol and httptools' C parser:
keep-alive connections per origin, streamed bodies with back-pressure, and connect,
read (between chunks) and pool timeouts.

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

import httptools
import httpx

HIGH_WATER = 256 * 1024


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


class Response:
    """An upstream answer whose headers arrived; the body is read or streamed once."""

    def __init__(self, pool: UpstreamPool, conn: _Conn, read_s: float | None) -> None:
        self.status_code = conn.status
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in conn.headers}
        self.content = b""
        self._pool = pool
        self._conn = conn
        self._read_s = read_s
        self._done = False

    async def aread(self) -> bytes:
        self.content = b"".join([chunk async for chunk in self.aiter_raw()])
        return self.content

    async def aiter_raw(self) -> AsyncIterator[bytes]:
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
            await conn.wait(self._read_s)

    def take_buffered(self) -> bytes:
        """Body bytes that arrived but were not read yet (without waiting)."""
        return self._conn.take() if self._conn.chunks else b""

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._pool.release(self._conn)

    async def aclose(self) -> None:
        """Done with the body: the connection goes back to the pool only if the whole
        message arrived; otherwise it is closed (the upstream sees the disconnect)."""
        if not self._done:
            self._done = True
            if not self._conn.message_done:
                self._conn._close()
            self._pool.release(self._conn)


class UpstreamPool:
    def __init__(
        self, max_connections: int = 200, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._idle: dict[tuple[bytes, str, int], list[_Conn]] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._ssl = ssl_context
        self._busy: set[_Conn] = set()

    async def post(
        self,
        url: httpx.URL,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        connect_s: float | None,
        read_s: float | None,
        pool_s: float | None,
        stream: bool = False,
    ) -> Response:
        """POST and return once the response headers arrived (the body too unless
        ``stream``). Raises httpx's ConnectError, ConnectTimeout, ReadTimeout,
        RemoteProtocolError or PoolTimeout."""
        await self._acquire_slot(pool_s)
        try:
            response = await self._send(url, _serialise(url, headers, body), connect_s, read_s)
        except BaseException:
            self._slots.release()
            raise
        if not stream:
            try:
                await response.aread()
            finally:
                await response.aclose()
        return response

    async def _acquire_slot(self, limit_s: float | None) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            async with asyncio.timeout(limit_s):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no upstream connection free in time") from None

    async def _send(
        self, url: httpx.URL, payload: bytes, connect_s: float | None, read_s: float | None
    ) -> Response:
        conn = await self._connection(url, connect_s)
        try:
            await self._exchange(conn, payload, read_s)
        except httpx.RemoteProtocolError:
            if not (conn.reused and not conn.any_byte):
                raise
            conn = await self._new_connection(url, connect_s)
            await self._exchange(conn, payload, read_s)
        return Response(self, conn, read_s)

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


def _serialise(url: httpx.URL, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    host = url.netloc
    lines = [b"POST ", url.raw_path, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
    for name, value in headers:
        lines += [name, b": ", value, b"\r\n"]
    lines += [b"content-length: ", str(len(body)).encode(), b"\r\n\r\n", body]
    return b"".join(lines)
