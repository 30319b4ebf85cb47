"""The hot path's request: headers read once (first of repeated ones wins, as with
Starlette), the body streamed with Starlette's semantics."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from gateway.incoming import HotRequest, header_map

RAW = [
    (b"x-workflow-id", b"wf-1"),
    (b"authorization", b"Bearer sg-a"),
    (b"x-workflow-id", b"wf-2"),
    (b"x-latin", "caf\xe9".encode("latin-1")),
]


def _scope() -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/", "headers": RAW, "app": object()}


def test_headers_match_starlettes() -> None:
    ours = header_map(RAW)
    theirs = Request(_scope()).headers
    assert ours == {"x-workflow-id": "wf-1", "authorization": "Bearer sg-a", "x-latin": "café"}
    assert all(theirs.get(name) == value for name, value in ours.items())


def _receiver(messages: list[dict[str, Any]]) -> Any:
    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


async def test_the_body_comes_in_its_chunks() -> None:
    receive = _receiver(
        [
            {"type": "http.request", "body": b"ab", "more_body": True},
            {"type": "http.request", "body": b"", "more_body": True},
            {"type": "http.request", "body": b"c"},
        ]
    )
    assert [chunk async for chunk in HotRequest(_scope(), receive).stream()] == [b"ab", b"c"]


async def test_a_client_gone_mid_body_is_a_disconnect() -> None:
    receive = _receiver(
        [{"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"}]
    )
    with pytest.raises(ClientDisconnect):
        _ = [chunk async for chunk in HotRequest(_scope(), receive).stream()]
