"""The benchmark's floor: a feature-less proxy on spendgate's own stack (uvicorn + uvloop +
httptools, one worker, a bare ASGI app). It reads the request body, POSTs it to the
upstream over a keep-alive HTTP/1.1 connection (an asyncio Protocol on httptools' C
parser) and relays the answer: the body in one piece when the upstream gave a
Content-Length, else every upstream read as it arrives (chunked, for SSE).

No auth, no accounting, no logging, no metrics, no retries, no limits: what is left is
what the Python stack itself costs per proxied request.

    python bench/floor.py --port 8001 --upstream http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any
from urllib.parse import urlsplit

import httptools
import uvicorn

Scope = dict[str, Any]


class Upstream(asyncio.Protocol):
    """One keep-alive connection to the upstream, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.waiter: asyncio.Future[None] | None = None
        self.begin()

    def begin(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.head_done = self.done = self.keep_alive = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.connection_lost(None)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it at the end
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.done = True

    async def wait(self) -> None:
        """Until the next read from the upstream (or its close)."""
        if self.closed:
            raise ConnectionError("the upstream closed the connection mid-answer")
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def take(self) -> bytes:
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        return data


class Floor:
    """The ASGI app: every POST goes to ``upstream`` + the same path."""

    def __init__(self, upstream: str, api_key: str) -> None:
        url = urlsplit(upstream)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.prefix = url.path.rstrip("/").encode()
        self.head = (
            f"host: {self.host}:{self.port}\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {api_key}\r\ncontent-length: "
        ).encode()
        self.idle: list[Upstream] = []

    async def connection(self) -> Upstream:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                conn.begin()
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(Upstream, self.host, self.port)
        return conn

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] != "POST":  # readiness
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        conn = await self.connection()
        assert conn.transport is not None
        path = self.prefix + scope["raw_path"]
        conn.transport.write(
            b"POST %s HTTP/1.1\r\n%s%d\r\n\r\n%s" % (path, self.head, len(body), body)
        )
        while not conn.head_done:
            await conn.wait()
        headers = [(n, v) for n, v in conn.headers if n in (b"content-type", b"content-length")]
        await send({"type": "http.response.start", "status": conn.status, "headers": headers})
        if any(n == b"content-length" for n, _ in headers):
            while not conn.done:
                await conn.wait()
            await send({"type": "http.response.body", "body": conn.take()})
        else:
            while not conn.done:
                if conn.chunks:
                    await send(
                        {"type": "http.response.body", "body": conn.take(), "more_body": True}
                    )
                else:
                    await conn.wait()
            await send({"type": "http.response.body", "body": conn.take()})
        if conn.keep_alive and not conn.closed:
            self.idle.append(conn)
        else:
            conn.connection_lost(None)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--api-key", default="sk-mock-provider", help="sent upstream as bearer")
    args = parser.parse_args()
    uvicorn.run(
        Floor(args.upstream, args.api_key),
        host="127.0.0.1",
        port=args.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
