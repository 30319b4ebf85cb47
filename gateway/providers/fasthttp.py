"""The lean upstream client: a pool of keep-alive HTTP/1.1 connections.

httpx (httpcore over anyio, the pure-Python h11 parser, cookies, redirects, auth
hooks) cost more CPU per upstream call than the whole rest of the gateway. This pool
does only what the gateway needs, with an asyncio Protocol and httptools' C parser
(``fastconn``): keep-alive connections per origin, streamed bodies with back-pressure,
connect, read (between chunks) and pool timeouts. It is one implementation of the
``seam.UpstreamClient`` contract (the other is ``httpxclient``); one pool per
provider, with that provider's connection limit and TLS context.

Errors raised are httpx's own (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``,
``RemoteProtocolError``, ``PoolTimeout``, ``LocalProtocolError``), so callers classify
them exactly as for httpx. A request is never re-sent: a failure on a reused
connection is an error like any other. Stale connections are avoided instead: one
whose peer closed (EOF seen) or that idled past ``keepalive_expiry_s`` is not reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

import httpx

from gateway.providers.fastconn import Conn
from gateway.providers.seam import (
    FINISH_BYTES,
    STOP_BYTES,
    ClientSettings,
    UpstreamRequest,
    Upstreams,
    check_header_block,
    tls_context,
)

Origin = tuple[bytes, str, int]


class FastResponse:
    """An upstream answer whose headers arrived; the body is read or streamed once."""

    def __init__(self, pool: FastPool, conn: Conn, read_s: float | None) -> None:
        self.status_code = conn.status
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in conn.headers}
        self.content = b""
        self._pool = pool
        self._conn = conn
        self._read_s = read_s
        self._done = False

    async def aread(self) -> bytes:
        conn, limit = self._conn, self._pool.settings.max_response_bytes
        parts: list[bytes] = []
        size = 0
        while True:
            if conn.chunks:
                data = conn.take()
                size += len(data)
                if size > limit:
                    raise conn.fail(httpx.RemoteProtocolError(f"response body over {limit} bytes"))
                parts.append(data)
            elif conn.message_done:
                break
            elif conn.error is not None:
                raise conn.error
            else:
                await conn.wait(self._read_s)
        self.content = parts[0] if len(parts) == 1 else b"".join(parts)
        self._release()
        return self.content

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if conn.chunks:
                yield conn.take()
                continue
            if conn.message_done:
                self._release()
                return
            if conn.error is not None:
                raise conn.error
            await conn.wait(self._read_s)

    def take_buffered(self) -> bytes:
        return self._conn.take() if self._conn.chunks else b""

    async def finish(self, limit_s: float) -> None:
        conn = self._conn
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        left = FINISH_BYTES
        try:
            while not (conn.message_done or conn.closed) and left >= 0:
                left -= len(self.take_buffered())
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await conn.wait(remaining)
        except httpx.ReadTimeout:
            pass  # the end did not come in time: the connection is closed below
        finally:
            await self.aclose()

    async def stop(self, limit_s: float) -> tuple[bytes, bool]:
        conn = self._conn
        transport = conn.transport
        if self._done or conn.closed or transport is None or not transport.can_write_eof():
            rest = self.take_buffered()  # TLS cannot half-close: what arrived is all
            ended = conn.message_done
            await self.aclose()
            return rest, ended
        transport.write_eof()
        parts = [self.take_buffered()]
        size = len(parts[0])
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit_s):
                while not (conn.message_done or conn.closed) and size <= STOP_BYTES:
                    await conn.wait(None)
                    parts.append(self.take_buffered())
                    size += len(parts[-1])
        parts.append(self.take_buffered())
        ended = conn.message_done or (conn.closed and not conn.aborted)
        await self.aclose()
        return b"".join(parts), ended

    def _release(self) -> None:
        if not self._done:
            self._done = True
            self._pool.release(self._conn)

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            if not self._conn.message_done:
                self._conn.close()
            self._pool.release(self._conn)


class FastPool:
    """One provider's connections: at most ``max_connections`` at a time."""

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or ClientSettings()
        self._idle: dict[Origin, deque[Conn]] = {}
        self._slots = asyncio.Semaphore(self.settings.max_connections)
        self._ssl = ssl_context
        self._clock = clock
        self._busy: set[Conn] = set()

    async def send(self, request: UpstreamRequest) -> FastResponse:
        """POST; return once the headers arrived (the body too unless ``stream``)."""
        payload = _serialise(request.url, request.headers, request.body)
        await self._acquire_slot()
        try:
            conn = await self._connection(request.url)
            # The wait for the headers is the caller's to bound (a stream's first-token
            # limit, a plain answer's deadline); ``read_s`` is the silence allowed
            # between the body's later reads.
            await self._exchange(conn, payload, None)
        except BaseException:
            self._slots.release()
            raise
        response = FastResponse(self, conn, request.read_s)
        if not request.stream:
            try:
                await response.aread()
            finally:
                await response.aclose()
        return response

    async def _acquire_slot(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            async with asyncio.timeout(self.settings.pool_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no upstream connection free in time") from None

    async def _exchange(self, conn: Conn, payload: bytes, limit_s: float | None) -> None:
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
            conn.close()
            raise

    async def _connection(self, url: httpx.URL) -> Conn:
        origin = _origin(url)
        idle = self._idle.get(origin)
        if idle:
            oldest_ok = self._clock() - self.settings.keepalive_expiry_s
            while idle:
                conn = idle.pop()
                if not conn.closed and conn.idle_since >= oldest_ok:
                    conn.reset()
                    return conn
                conn.close()
        return await self._new_connection(origin)

    async def _new_connection(self, origin: Origin) -> Conn:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        ssl_ctx = None
        if scheme == b"https":
            ssl_ctx = self._ssl = self._ssl or tls_context()
        max_head = self.settings.max_response_header_bytes
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                _, conn = await loop.create_connection(
                    lambda: Conn(origin, max_head),
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

    def release(self, conn: Conn) -> None:
        """A response is done with ``conn``: back to the pool, or closed."""
        if conn in self._busy:
            self._busy.discard(conn)
            self._slots.release()
        if conn.closed or not conn.message_done or not conn.keep_alive:
            conn.close()
            return
        now = self._clock()
        conn.idle_since = now
        idle = self._idle.get(conn.origin)
        if idle is None:
            idle = self._idle[conn.origin] = deque()
        oldest_ok = now - self.settings.keepalive_expiry_s
        while idle and (idle[0].idle_since < oldest_ok or idle[0].closed):
            idle.popleft().close()
        idle.append(conn)

    def idle_connections(self) -> int:
        """Pooled connections that are still open (for tests and diagnostics)."""
        return sum(not c.closed for conns in self._idle.values() for c in conns)

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        for conn in list(self._busy):
            conn.close()


# The Runtime's name for every provider's client together (``seam.Upstreams``).
UpstreamPool = Upstreams


def _origin(url: httpx.URL) -> Origin:
    scheme = url.raw_scheme
    port = url.port or (443 if scheme == b"https" else 80)
    return scheme, url.host, port


def _serialise(url: httpx.URL, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    lines = [b"POST ", url.raw_path, b" HTTP/1.1\r\nhost: ", url.netloc, b"\r\n"]
    for name, value in headers:
        lines += [name, b": ", value, b"\r\n"]
    lines += [b"content-length: ", str(len(body)).encode(), b"\r\n\r\n", body]
    payload = b"".join(lines)
    check_header_block(payload, len(payload) - len(body), len(headers) + 4)
    return payload
