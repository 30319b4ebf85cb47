"""The seam as the providers and the composition root use it: streams that keep their
connection, oversized events, per-provider clients and TLS contexts, secrets and
header values, proxies, and the classification of every transport failure."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.compose import upstream_pool
from gateway.config import ConfigError, parse, resolve_secrets, upstream_routes
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import UpstreamCall
from gateway.providers.openai_compat import OpenAIProvider
from gateway.providers.seam import ClientSettings, UpstreamClient
from gateway.providers.transport import Transport, open_client
from policies.errors import UpstreamError
from tests.transport.conftest import MakeClient, post
from tests.transport.rawserver import (
    CHUNKED_HEAD,
    LAST_CHUNK,
    Hold,
    RawServer,
    Read,
    Send,
    Wait,
    chunk,
    response,
)

OPENAI_EVENTS = [
    b'data: {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}\n\n',
    b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]}\n\n',
    b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}\n\n',
    b"data: [DONE]\n\n",
]
ANTHROPIC_EVENTS = [
    b'event: message_start\ndata: {"type": "message_start", "message": {"id": "msg_1", '
    b'"usage": {"input_tokens": 3, "output_tokens": 1}}}\n\n',
    b'event: content_block_start\ndata: {"type": "content_block_start", "index": 0, '
    b'"content_block": {"type": "text", "text": ""}}\n\n',
    b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, '
    b'"delta": {"type": "text_delta", "text": "Hi"}}\n\n',
    b'event: message_delta\ndata: {"type": "message_delta", "delta": {"stop_reason": '
    b'"end_turn"}, "usage": {"output_tokens": 1}}\n\n',
    b'event: message_stop\ndata: {"type": "message_stop"}\n\n',
]
OPENAI_JSON = (
    b'{"model": "m", "choices": [{"message": {"content": "ok"}}], '
    b'"usage": {"prompt_tokens": 3, "completion_tokens": 1}}'
)
ANTHROPIC_JSON = (
    b'{"id": "msg_2", "type": "message", "content": [{"type": "text", "text": "ok"}], '
    b'"stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 1}}'
)


def provider(
    api: str, client: UpstreamClient, url: str, **limits: Any
) -> OpenAIProvider | AnthropicProvider:
    transport = Transport(client, "p", idle_timeout_s=2.0, first_token_timeout_s=2.0, **limits)
    if api == "anthropic":
        return AnthropicProvider("p", url, "sk-test", transport, version="2023-06-01")
    return OpenAIProvider("p", url + "/v1", "sk-test", transport)


def call(stream: bool) -> UpstreamCall:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return UpstreamCall("chat", body, "m", stream, {}, deadline=0.0, max_output_tokens=16)


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_a_finished_stream_keeps_its_connection_when_the_terminator_comes_late(
    server: RawServer, make_client: MakeClient, api: str
) -> None:
    events = OPENAI_EVENTS if api == "openai" else ANTHROPIC_EVENTS
    done = asyncio.Event()
    server.script(
        [
            Read(),
            Send(CHUNKED_HEAD + b"".join(chunk(event) for event in events)),
            Wait(done),  # the provider saw the end of the content...
            Send(LAST_CHUNK),  # ...and only then does the message's end arrive
            Read(),
            Send(response(OPENAI_JSON if api == "openai" else ANTHROPIC_JSON)),
        ]
    )
    p = provider(api, make_client(server.url), server.url)
    stream = await p.stream(call(True))
    frames = [frame async for frame in stream]
    assert stream.state.done and frames
    done.set()
    await stream.aclose()
    completed = await p.complete(call(False))
    assert completed.status == 200
    assert server.connections == 1 and len(server.requests) == 2


async def test_a_stream_cut_before_its_end_closes_its_connection(
    server: RawServer, make_client: MakeClient
) -> None:
    server.script(
        [Read(), Send(CHUNKED_HEAD + chunk(OPENAI_EVENTS[0])), Hold()],
        [Read(), Send(response(OPENAI_JSON))],
    )
    p = provider("openai", make_client(server.url), server.url)
    stream = await p.stream(call(True))
    await stream.aclose()  # not done: the upstream must see the disconnect
    await p.complete(call(False))
    assert server.connections == 2


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_an_oversized_event_is_a_stream_error(
    server: RawServer, make_client: MakeClient, api: str
) -> None:
    events = OPENAI_EVENTS if api == "openai" else ANTHROPIC_EVENTS
    huge = b"data: " + b"x" * 5000  # never ends
    server.script([Read(), Send(CHUNKED_HEAD + chunk(events[0]) + chunk(huge)), Hold()])
    p = provider(api, make_client(server.url), server.url, max_event_bytes=4096)
    stream = await p.stream(call(True))
    with pytest.raises(UpstreamError) as caught:
        async for _ in stream:
            pass
    assert caught.value.kind == "stream_error" and "oversized event" in caught.value.message
    await stream.aclose()


def two_providers(url: str, transport: str) -> dict[str, Any]:
    def one(limit: int) -> dict[str, Any]:
        return {
            "kind": "openai",
            "base_url": url,
            "api_key_env": "K",
            "max_connections": limit,
            "connect_timeout_s": 0.5,  # also the pool timeout; room for a loaded machine
        } | ({} if transport == "fast" else {"transport": transport})  # fast: the default

    return {
        "providers": {"a": one(1), "b": one(1)},
        "models": {"m": {"provider": "a", "upstream_model": "gpt-4o"}},
    }


async def test_each_provider_has_its_own_connection_limit(server: RawServer, kind: str) -> None:
    server.script([Read(), Send(CHUNKED_HEAD), Hold()], [Read(), Send(response())])
    upstreams = upstream_pool(parse(two_providers(server.url, kind)))
    try:
        held = await post(upstreams["a"], server.url, stream=True)
        with pytest.raises(httpx.PoolTimeout):
            await post(upstreams["a"], server.url)  # a's one connection is busy
        assert (await post(upstreams["b"], server.url)).status_code == 200
        await held.aclose()
    finally:
        await upstreams.aclose()


async def test_one_tls_context_per_provider_made_at_start(
    make_client: MakeClient, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    made: list[ssl.SSLContext] = []
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counting)
    closing = response(headers=b"connection: close\r\n")
    async with RawServer(tls=server_tls) as server:
        server.script([Read(), Send(closing), Hold()], [Read(), Send(closing), Hold()])
        client = make_client(server.url, ca_file=str(cert))
        assert len(made) == 1  # made with the client, trusting only ca_file
        for _ in range(2):
            assert (await post(client, server.url)).status_code == 200
        assert server.connections == 2 and len(made) == 1


def test_a_provider_secret_with_a_newline_is_refused_at_start() -> None:
    config = parse(two_providers("https://api.example.com", "fast"))
    with pytest.raises(ConfigError) as caught:
        resolve_secrets(config, {"K": "sk-secret-value\n"})
    assert "environment variable K" in str(caught.value)
    assert "sk-secret-value" not in str(caught.value)


def test_a_missing_ca_file_is_refused_at_start(tmp_path: Path) -> None:
    raw = two_providers("https://api.example.com", "httpx")
    raw["providers"]["a"]["ca_file"] = str(tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"providers\.a\.ca_file"):
        parse(raw)


def test_a_proxy_variable_selects_httpx_for_the_hosts_it_covers() -> None:
    raw = two_providers("https://api.openai.com/v1", "fast")
    raw["providers"]["b"]["base_url"] = "https://llm.corp.internal/v1"
    env = {"HTTPS_PROXY": "http://user:pw@proxy:3128", "no_proxy": "localhost,.internal"}
    routes = upstream_routes(parse(raw), env)
    assert (routes["a"].transport, routes["a"].proxy) == ("httpx", "http://user:pw@proxy:3128")
    assert routes["a"].proxy_shown == "http://proxy:3128"
    assert (routes["b"].transport, routes["b"].proxy) == ("fast", None)
    assert upstream_routes(parse(raw), {})["a"].transport == "fast"


async def test_requests_go_through_the_proxy(server: RawServer) -> None:
    raw = two_providers("http://upstream.invalid/v1", "fast")
    route = upstream_routes(parse(raw), {"HTTP_PROXY": server.url})["a"]
    server.script([Read(), Send(response(b'{"via": "proxy"}'))])
    client = open_client(route.transport, ClientSettings(), base_url="", proxy=route.proxy)
    try:
        answer = await post(client, "http://upstream.invalid")
    finally:
        await client.aclose()
    assert answer.content == b'{"via": "proxy"}'
    assert server.requests[0].path == b"http://upstream.invalid/v1/chat/completions"


async def test_transport_failures_are_classified_alike(
    server: RawServer, make_client: MakeClient
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    refused = provider("openai", make_client(closed_url), closed_url)
    with pytest.raises(UpstreamError) as caught:
        await refused.complete(call(False))
    assert (caught.value.kind, caught.value.reached) == ("connect_error", False)

    server.script([Read(), Send(b"NOT HTTP AT ALL\r\n\r\n")])
    garbled = provider("openai", make_client(server.url), server.url)
    with pytest.raises(UpstreamError) as caught:
        await garbled.complete(call(False))
    assert (caught.value.kind, caught.value.retryable) == ("server_error", True)


async def test_a_header_with_a_newline_is_refused_before_sending(
    server: RawServer, make_client: MakeClient
) -> None:
    bad = OpenAIProvider("p", server.url + "/v1", "sk-test\n", _transport(make_client, server))
    with pytest.raises(UpstreamError) as caught:
        await bad.complete(call(False))
    assert (caught.value.retryable, caught.value.reached) == (False, False)
    assert server.received_bytes == 0


def _transport(make_client: MakeClient, server: RawServer) -> Transport:
    client = make_client(server.url)
    return Transport(client, "p", idle_timeout_s=2.0, first_token_timeout_s=2.0)
