"""OpenAI's Responses API, native: usage of a response, and its typed event stream.

The stream's events are forwarded as they come (named, as OpenAI sends them); they are
read on the way for accounting: text and tool-argument deltas (what arrived, should the
stream be cut), and the usage of the final event (``response.completed``,
``response.incomplete`` or ``response.failed``), which is held back and sent by the
relay once the attempt is settled.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from accounting.usage import MAX_REPORTED_TOKENS, Usage
from gateway import sse
from gateway.providers.base import StreamState, pass_headers
from gateway.providers.classify import MAX_DETAIL, stream_broken
from gateway.providers.seam import UpstreamResponse
from gateway.providers.transport import Transport
from policies.errors import UpstreamError

FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
TEXT_EVENTS = frozenset(
    {
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.refusal.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
    }
)


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value if value <= MAX_REPORTED_TOKENS else None


def usage_of(block: object) -> Usage:
    """Usage from a Responses ``usage`` object (cache reads are part of the input)."""
    if not isinstance(block, dict):
        return Usage()
    details = block.get("input_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        input_tokens=_count(block.get("input_tokens")),
        output_tokens=_count(block.get("output_tokens")),
        cached_input_tokens=_count(cached),
    )


def answer_text(payload: dict[str, Any]) -> str:
    """The text a response generated (to estimate its usage when it reports none)."""
    parts: list[str] = []
    for item in payload.get("output") or ():
        if not isinstance(item, dict):
            continue
        for key in ("name", "arguments"):
            if isinstance(item.get(key), str):
                parts.append(item[key])
        for part in item.get("content") or ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
    return "".join(parts)


class ResponsesStream:
    def __init__(self, provider: str, response: UpstreamResponse, transport: Transport) -> None:
        self.provider = provider
        self.status = response.status_code
        self.headers = {**pass_headers(response.headers), "content-type": "text/event-stream"}
        self.state = StreamState()
        self._response = response
        self._transport = transport
        self._decoder = transport.decoder()
        self._terminal: bytes | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        decoder = self._decoder
        async for events in self._transport.events(self._response, self.state, decoder):
            out = [f for e in events if (f := self._on_event(e)) is not None]
            if out:
                yield b"".join(out)
            if self.state.done:
                return
        tail = [f for e in decoder.flush() if (f := self._on_event(e)) is not None]
        if tail:
            yield b"".join(tail)
        if not self.state.done:
            raise stream_broken(self.provider, "ended before the response completed")

    def terminal(self) -> bytes:
        return self._terminal or b""

    def _on_event(self, event: sse.Event) -> bytes | None:
        data = self.state.event_object(event.data)
        if data is None:
            return None
        kind = data.get("type") if isinstance(data.get("type"), str) else event.event
        frame = sse.frame(event.data, kind)
        if kind in FINAL_EVENTS:
            self._final(data)
            self._terminal = frame
            return None
        if kind == "error":
            self.state.ended_by_upstream = True
            detail = self._transport.scrub(str(data)[:MAX_DETAIL])
            raise stream_broken(self.provider, f"reported an error: {detail}")
        self._observe(kind, data)
        return frame

    def _observe(self, kind: object, data: dict[str, Any]) -> None:
        state = self.state
        if kind == "response.created":
            response = data.get("response")
            if isinstance(response, dict) and isinstance(response.get("id"), str):
                state.response_id = response["id"]
        elif kind in TEXT_EVENTS and isinstance(data.get("delta"), str):
            state.add_text(data["delta"])
            state.content_seen = state.content_seen or kind != "response.reasoning_text.delta"
            state.tool_seen = state.tool_seen or kind == "response.function_call_arguments.delta"
        elif kind == "response.output_item.added":
            item = data.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call":
                state.tool_seen = True
                if isinstance(item.get("name"), str):
                    state.add_text(item["name"])

    def _final(self, data: dict[str, Any]) -> None:
        response = data.get("response")
        response = response if isinstance(response, dict) else {}
        usage = usage_of(response.get("usage"))
        self.state.usage = self.state.usage.merge(usage)
        self.state.usage_final = True
        self.state.finish_reason = str(response.get("status") or "completed")
        self.state.done = True

    async def aclose(self, *, stop: bool = False) -> None:
        """Close the upstream; what it already sent us still counts (the meter sees it)."""
        await self._transport.end_stream(
            self._response, self._decoder, self.state, self._absorb, stop=stop
        )

    def _absorb(self, event: sse.Event) -> None:
        with contextlib.suppress(UpstreamError):  # an error event: its state is recorded
            self._on_event(event)
