"""Anthropic's Messages API, native: the client's body and events pass as they are.

Only the model is set to the upstream's; the client's ``anthropic-version`` and
``anthropic-beta`` headers win over the provider's default version. Error bodies stay
in Anthropic's shape. The stream's events are read on the way by the same translator
the chat path uses (for usage, text that arrived, the stop reason), but forwarded
unchanged; ``message_stop`` is held back and sent by the relay once the attempt is
settled.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway import sse
from gateway.providers.anthropic_stream import (
    AnthropicStreamTranslator,
    is_context_window_error,
    usage_from_anthropic,
)
from gateway.providers.base import Completed, StreamState, UpstreamCall, pass_headers
from gateway.providers.classify import MAX_DETAIL, json_or_none, not_json, stream_broken
from gateway.providers.seam import UpstreamResponse
from gateway.providers.transport import Transport
from policies.errors import UpstreamError

PASSED = ("anthropic-version", "anthropic-beta")


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str  # without /v1
    headers: Mapping[str, str]
    transport: Transport

    def headers_for(self, call_headers: Mapping[str, str]) -> dict[str, str]:
        own = {k: v for k, v in call_headers.items() if k not in PASSED}
        client = {k: v for k, v in call_headers.items() if k in PASSED}
        return {**own, **self.headers, **client}


def _body(call: UpstreamCall) -> bytes:
    body = dict(call.body)
    body["model"] = call.upstream_model
    return orjson.dumps(body)


def _fail(target: Target, response: UpstreamResponse, body: bytes) -> UpstreamError:
    payload = json_or_none(body)
    usage = None
    if isinstance(payload, dict) and isinstance(payload.get("usage"), dict):
        usage = usage_from_anthropic(payload["usage"])
    window = is_context_window_error(response.status_code, payload)
    return target.transport.fail(response, body, context_window=window, usage=usage)


async def complete(target: Target, call: UpstreamCall) -> Completed:
    url = target.base_url + "/v1/messages"
    headers = target.headers_for(call.headers)
    response = await target.transport.post(url, headers, _body(call), stream=False)
    body = response.content
    if response.status_code >= 400:
        raise _fail(target, response, body)
    payload = json_or_none(body)
    if not isinstance(payload, dict):
        raise not_json(target.name, response.status_code)
    usage = usage_from_anthropic(payload.get("usage"))
    text = "" if usage.complete else _text(payload)
    out_headers = {"content-type": "application/json"}
    return Completed(response.status_code, out_headers, body, usage, call.upstream_model, text)


def _text(payload: dict[str, Any]) -> str:
    parts = []
    for block in payload.get("content") or ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind in ("text", "thinking"):
            value = block.get(kind)
            parts.append(value if isinstance(value, str) else "")
        elif kind == "tool_use":
            parts.append(orjson.dumps(block.get("input")).decode())
    return "".join(parts)


async def stream(target: Target, call: UpstreamCall) -> MessagesStream:
    url = target.base_url + "/v1/messages"
    headers = target.headers_for(call.headers)
    transport = target.transport
    response = await transport.post(url, headers, _body(call), stream=True, call=call)
    if response.status_code >= 400:
        raise _fail(target, response, await transport.read_error(response))
    return MessagesStream(target.name, response, transport)


async def count_tokens(target: Target, body: dict[str, Any], headers: Mapping[str, str]) -> Any:
    """``/v1/messages/count_tokens`` at the provider: (status, parsed body)."""
    url = target.base_url + "/v1/messages/count_tokens"
    response = await target.transport.post(
        url, target.headers_for(headers), orjson.dumps(body), stream=False
    )
    return response.status_code, json_or_none(response.content)


class MessagesStream:
    def __init__(self, provider: str, response: UpstreamResponse, transport: Transport) -> None:
        self.provider = provider
        self.status = response.status_code
        self.headers = {**pass_headers(response.headers), "content-type": "text/event-stream"}
        self.state = StreamState()
        self._response = response
        self._transport = transport
        self._tr = AnthropicStreamTranslator("", 0, False)
        self.state.text_source = lambda: self._tr.generated_so_far
        self._decoder = transport.decoder()
        self._terminal = b""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        decoder = self._decoder
        async for events in self._transport.events(self._response, self.state, decoder):
            out = [f for e in events if (f := self._on_event(e)) is not None]
            if out:
                yield b"".join(out)
            if self.state.done:
                return
        if self._tr.finish_reason is None:
            raise stream_broken(self.provider, "ended before the answer finished")
        self.state.anomalies.append("missing_done")
        self._terminal = sse.frame(b'{"type":"message_stop"}', "message_stop")
        self.state.done = True

    def terminal(self) -> bytes:
        return self._terminal

    def _on_event(self, event: sse.Event) -> bytes | None:
        data = self.state.event_object(event.data)
        if data is None:
            return None
        kind = data.get("type") if isinstance(data.get("type"), str) else event.event
        self._tr.feed(kind, data)
        sync_state(self.state, self._tr)
        if self._tr.error is not None:
            self.state.ended_by_upstream = True
            detail = self._transport.scrub(str(self._tr.error)[:MAX_DETAIL])
            raise stream_broken(self.provider, f"reported an error: {detail}")
        frame = sse.frame(event.data, str(kind))
        if kind == "message_stop":
            self._terminal = frame
            return None
        return frame

    async def aclose(self, *, stop: bool = False) -> None:
        await self._transport.end_stream(
            self._response, self._decoder, self.state, self._absorb, stop=stop
        )

    def _absorb(self, event: sse.Event) -> None:
        with contextlib.suppress(UpstreamError):
            self._on_event(event)


def sync_state(state: StreamState, tr: AnthropicStreamTranslator) -> None:
    """What the translator has seen of an Anthropic stream, where the meter reads it."""
    state.usage = tr.usage
    state.usage_final = tr.usage_final
    state.content_seen = bool(tr.text_so_far)
    state.response_id = tr.message_id or None
    state.tool_seen = tr.tool_seen
    state.overflow_bytes = tr.overflow_bytes
    state.finish_reason = tr.finish_reason
    state.done = tr.stopped and tr.finish_reason is not None
