"""The upstream seam's contract (``gateway/providers/seam.py``), over raw sockets, for
both implementations: the lean pool (``fast``) and httpx."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.transport.conftest import MakeClient, post
from tests.transport.rawserver import (
    CHUNKED_HEAD,
    LAST_CHUNK,
    AtEof,
    Close,
    Flush,
    Hold,
    RawServer,
    Read,
    Send,
    Wait,
    chunk,
    response,
)

EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


async def test_1xx_answers_are_skipped_and_each_request_gets_its_own_answer(
    server: RawServer, make_client: MakeClient
) -> None:
    server.script(
        [
            Read(),
            Send(EARLY_HINTS),  # in a write of its own, before the answer
            Flush(),
            Send(CONTINUE + EARLY_HINTS),
            Flush(),
            Send(response(b'{"answer": "first"}')),
            Read(),
            Send(CONTINUE + response(b'{"answer": "second"}')),
        ]
    )
    client = make_client(server.url)
    first = await post(client, server.url)
    second = await post(client, server.url)
    assert (first.status_code, first.content) == (200, b'{"answer": "first"}')
    assert "link" not in first.headers  # the hints' headers are not the answer's
    assert (second.status_code, second.content) == (200, b'{"answer": "second"}')
    assert server.connections == 1 and len(server.requests) == 2


async def test_a_1xx_is_never_returned_while_the_answer_is_still_coming(
    server: RawServer, make_client: MakeClient
) -> None:
    server.script([Read(), Send(EARLY_HINTS), Flush(), Send(CHUNKED_HEAD + chunk(b"data: 1\n\n"))])
    client = make_client(server.url)
    answer = await post(client, server.url, stream=True)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/event-stream"
    await answer.aclose()


async def test_bytes_after_the_answer_never_go_back_to_the_pool(
    server: RawServer, make_client: MakeClient, kind: str
) -> None:
    if kind == "httpx":
        pytest.xfail("h11 keeps bytes that came after an answer for the next request")
    unsolicited = response(b'{"answer": "nobody asked"}')
    server.script(
        [Read(), Send(response(b'{"answer": "first"}') + unsolicited), Hold()],
        [Read(), Send(response(b'{"answer": "second"}'))],
    )
    client = make_client(server.url)
    assert (await post(client, server.url)).content == b'{"answer": "first"}'
    assert (await post(client, server.url)).content == b'{"answer": "second"}'
    assert server.connections == 2


async def test_a_close_delimited_body_is_a_complete_answer(
    server: RawServer, make_client: MakeClient
) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n"
    server.script(
        [Read(), Send(head + b'{"answer": '), Flush(), Send(b'"all of it"}'), Close()],
        [Read(), Send(response(b"{}"))],
    )
    client = make_client(server.url)
    answer = await post(client, server.url)
    assert (answer.status_code, answer.content) == (200, b'{"answer": "all of it"}')
    assert (await post(client, server.url)).content == b"{}"  # on a new connection
    assert server.connections == 2


async def test_a_close_delimited_stream_ends_cleanly(
    server: RawServer, make_client: MakeClient
) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"
    server.script([Read(), Send(head + b"data: 1\n\n"), Flush(), Send(b"data: 2\n\n"), Close()])
    client = make_client(server.url)
    answer = await post(client, server.url, stream=True)
    body = b"".join([part async for part in answer.aiter_raw()])
    assert body == b"data: 1\n\ndata: 2\n\n"


async def test_a_chunked_body_with_extensions_and_trailers(
    server: RawServer, make_client: MakeClient
) -> None:
    body = (
        CHUNKED_HEAD
        + chunk(b'{"answer": ', b";name=value")
        + chunk(b'"chunked"}', b';quoted="a b";bare')
        + b"0;last=1\r\nx-trailer: one\r\nserver-timing: total;dur=12\r\n\r\n"
    )
    server.script([Read(), Send(body), Read(), Send(response(b"{}"))])
    client = make_client(server.url)
    answer = await post(client, server.url)
    assert (answer.status_code, answer.content) == (200, b'{"answer": "chunked"}')
    assert "x-trailer" not in answer.headers
    assert (await post(client, server.url)).content == b"{}"
    assert server.connections == 1  # the trailers did not cost the connection


async def test_a_chunked_stream_split_anywhere(server: RawServer, make_client: MakeClient) -> None:
    events = chunk(b"data: 1\n\n", b";x=y") + chunk(b"data: 2\n\n") + LAST_CHUNK
    steps = [Read(), Send(CHUNKED_HEAD)]
    for i in range(0, len(events), 5):
        steps += [Send(events[i : i + 5]), Flush()]
    server.script(steps)
    client = make_client(server.url)
    answer = await post(client, server.url, stream=True)
    assert b"".join([part async for part in answer.aiter_raw()]) == b"data: 1\n\ndata: 2\n\n"


async def test_finish_keeps_the_connection_when_the_terminator_comes_late(
    server: RawServer, make_client: MakeClient
) -> None:
    server.script(
        [
            Read(),
            Send(CHUNKED_HEAD + chunk(b"data: [DONE]\n\n")),
            Flush(),
            Send(LAST_CHUNK),
            Read(),
            Send(response(b"{}")),
        ]
    )
    client = make_client(server.url)
    answer = await post(client, server.url, stream=True)
    seen = b""
    async for part in answer.aiter_raw():
        seen += part
        if b"[DONE]" in seen:
            break
    await answer.finish(2.0)
    assert (await post(client, server.url)).content == b"{}"
    assert server.connections == 1


async def test_finish_closes_a_connection_whose_end_does_not_come(
    server: RawServer, make_client: MakeClient
) -> None:
    server.script(
        [Read(), Send(CHUNKED_HEAD + chunk(b"data: [DONE]\n\n")), Hold()],
        [Read(), Send(response(b"{}"))],
    )
    client = make_client(server.url)
    answer = await post(client, server.url, stream=True)
    async for part in answer.aiter_raw():
        assert part
        break
    await answer.finish(0.02)  # real waiting, kept short: nothing more will come
    assert (await post(client, server.url)).content == b"{}"
    assert server.connections == 2


async def test_stop_collects_what_an_upstream_sent_until_it_stopped(
    server: RawServer, make_client: MakeClient, kind: str
) -> None:
    server.script(
        [Read(), Send(CHUNKED_HEAD + chunk(b"data: 1\n\n")), AtEof(chunk(b"data: 2\n\n"))]
    )
    client = make_client(server.url)
    answer = await post(client, server.url, stream=True)
    async for part in answer.aiter_raw():
        assert part == b"data: 1\n\n"
        break
    rest, ended = await answer.stop(2.0)
    if kind == "fast":  # told by a half-close: what it sent before stopping, all of it
        assert (rest, ended) == (b"data: 2\n\n", True)
    else:  # httpx cannot half-close: the connection is closed, nothing known
        assert (rest, ended) == (b"", False)
    assert server.connections == 1


async def test_stop_gives_up_on_an_upstream_that_goes_on(
    server: RawServer, make_client: MakeClient
) -> None:
    never = asyncio.Event()
    server.script([Read(), Send(CHUNKED_HEAD + chunk(b"data: 1\n\n")), Flush(), Wait(never)])
    client = make_client(server.url)
    answer = await post(client, server.url, stream=True)
    async for part in answer.aiter_raw():
        assert part == b"data: 1\n\n"
        break
    assert await answer.stop(0.05) == (b"", False)  # real waiting, kept short


async def test_connection_close_is_honoured(server: RawServer, make_client: MakeClient) -> None:
    server.script(
        [Read(), Send(response(b'{"n": 1}', headers=b"connection: close\r\n")), Hold()],
        [Read(), Send(response(b'{"n": 2}'))],
    )
    client = make_client(server.url)
    assert (await post(client, server.url)).content == b'{"n": 1}'
    assert (await post(client, server.url)).content == b'{"n": 2}'
    assert server.connections == 2 and [r.connection for r in server.requests] == [0, 1]


async def test_redirects_are_never_followed(server: RawServer, make_client: MakeClient) -> None:
    moved = response(b"", status="307 Temporary Redirect", headers=b"location: /elsewhere\r\n")
    server.script([Read(), Send(moved), Read(), Send(response(b"{}"))])
    client = make_client(server.url)
    answer = await post(client, server.url)
    assert answer.status_code == 307 and answer.headers["location"] == "/elsewhere"
    assert [r.path for r in server.requests] == [b"/v1/chat/completions"]


async def test_a_request_is_never_resent_after_a_reused_connection_fails(
    server: RawServer, make_client: MakeClient
) -> None:
    server.script([Read(), Send(response(b"{}")), Read(), Close()])
    client = make_client(server.url)
    assert (await post(client, server.url)).content == b"{}"
    with pytest.raises(httpx.RemoteProtocolError):
        await post(client, server.url)
    assert server.connections == 1 and len(server.requests) == 2


@pytest.mark.parametrize(
    "header",
    [b"sk-key\n", b"sk-key\r\nx-injected: 1", b"sk\rkey", b"sk\0key"],
    ids=["trailing-lf", "crlf-injection", "cr", "nul"],
)
async def test_header_values_with_cr_lf_or_nul_never_reach_the_wire(
    server: RawServer, make_client: MakeClient, header: bytes
) -> None:
    client = make_client(server.url)
    with pytest.raises(httpx.LocalProtocolError):
        await post(client, server.url, headers=[(b"authorization", b"Bearer " + header)])
    assert server.requests == [] and server.received_bytes == 0
