"""What an upstream can make the gateway hold or wait for, and how connections are
kept: size limits, idle expiry, peers that closed, per-provider connection limits."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.providers.fasthttp import FastPool
from gateway.providers.httpxclient import HttpxClient
from gateway.providers.seam import ClientSettings
from tests.transport.conftest import MakeClient, post
from tests.transport.rawserver import (
    CHUNKED_HEAD,
    Close,
    Endless,
    Hold,
    RawServer,
    Read,
    Send,
    chunk,
    response,
)


async def test_endless_response_headers_are_cut_at_the_limit(
    server: RawServer, make_client: MakeClient
) -> None:
    server.script([Read(), Endless(b"HTTP/1.1 200 OK\r\nx-pad: ", b"a" * 65536)])
    client = make_client(server.url, max_response_header_bytes=64 * 1024)
    with pytest.raises(httpx.RemoteProtocolError):
        await post(client, server.url)
    assert server.sent[0] < 32 * 1024 * 1024  # the client went away long before the cap


async def test_many_headers_over_the_limit_are_refused(
    server: RawServer, make_client: MakeClient
) -> None:
    many = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 100) for i in range(100))  # ~11 KB
    server.script([Read(), Send(response(b"{}", headers=many)), Hold()])
    client = make_client(server.url, max_response_header_bytes=8 * 1024)
    with pytest.raises(httpx.RemoteProtocolError):
        await post(client, server.url)


async def test_headers_under_the_limit_pass(server: RawServer, make_client: MakeClient) -> None:
    some = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 100) for i in range(50))  # ~5.5 KB
    server.script([Read(), Send(response(b"{}", headers=some))])
    client = make_client(server.url, max_response_header_bytes=8 * 1024)
    assert (await post(client, server.url)).headers["x-h49"] == "v" * 100


async def test_an_endless_body_is_cut_at_the_limit(
    server: RawServer, make_client: MakeClient
) -> None:
    server.script([Read(), Endless(CHUNKED_HEAD, chunk(b"b" * 65536))])
    client = make_client(server.url, max_response_bytes=1024 * 1024)
    with pytest.raises(httpx.RemoteProtocolError):
        await post(client, server.url)
    assert server.sent[0] < 32 * 1024 * 1024


async def test_a_body_over_its_content_length_limit_is_refused(
    server: RawServer, make_client: MakeClient
) -> None:
    server.script([Read(), Send(response(b"x" * 300_000))], [Read(), Send(response(b"{}"))])
    client = make_client(server.url, max_response_bytes=200_000)
    with pytest.raises(httpx.RemoteProtocolError):
        await post(client, server.url)
    assert (await post(client, server.url)).content == b"{}"
    assert server.connections == 2  # the connection of the refused body was closed


async def test_a_connection_the_server_closed_while_idle_is_not_reused(
    server: RawServer, make_client: MakeClient, kind: str
) -> None:
    server.script([Read(), Send(response(b'{"n": 1}')), Close()], [Read(), Send(response())])
    client = make_client(server.url)
    assert (await post(client, server.url)).content == b'{"n": 1}'
    if kind == "fast":  # the pool learns of the EOF from the loop: let it see it
        assert isinstance(client, FastPool)
        await eventually(lambda: client.idle_connections() == 0)
    assert (await post(client, server.url)).content == b"{}"
    assert server.connections == 2 and len(server.requests) == 2


async def test_idle_connections_expire() -> None:
    now = [1000.0]
    async with RawServer() as server:
        server.script(
            [Read(), Send(response()), Read(), Send(response()), Hold()],
            [Read(), Send(response())],
        )
        pool = FastPool(ClientSettings(keepalive_expiry_s=15.0), clock=lambda: now[0])
        try:
            await post(pool, server.url)
            now[0] += 14.9
            await post(pool, server.url)  # still fresh: reused
            assert server.connections == 1
            now[0] += 15.1
            await post(pool, server.url)  # idle too long: a new connection
            assert server.connections == 2 and len(server.requests) == 3
        finally:
            await pool.aclose()


def test_the_httpx_client_gets_the_same_expiry_and_limits() -> None:
    client = HttpxClient(ClientSettings(max_connections=7, keepalive_expiry_s=3.5))
    pool = client._client._transport._pool  # type: ignore[attr-defined]
    assert (pool._max_connections, pool._keepalive_expiry) == (7, 3.5)


async def test_a_pool_waits_at_most_its_pool_timeout(
    server: RawServer, make_client: MakeClient
) -> None:
    server.script([Read(), Send(CHUNKED_HEAD), Hold()])
    client = make_client(server.url, max_connections=1, pool_timeout_s=0.02)
    held = await post(client, server.url, stream=True)
    with pytest.raises(httpx.PoolTimeout):
        await post(client, server.url)  # real waiting, kept short: the pool timeout
    await held.aclose()


async def eventually(condition: object, turns: int = 1000) -> None:
    """Let the loop run until ``condition()`` holds (a socket event to be observed)."""
    assert callable(condition)
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never held")
