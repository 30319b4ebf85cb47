"""OpenAI and every OpenAI-compatible ``base_url`` (vLLM, Azure-style, Groq, ...)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from accounting.usage import from_openai
from gateway import sse
from gateway.providers.base import (
    Completed,
    Endpoint,
    StreamState,
    UpstreamCall,
    pass_headers,
)
from gateway.providers.classify import (
    MAX_DETAIL,
    json_or_none,
    not_json,
    openai_error_code,
    stream_broken,
)
from gateway.providers.openai_responses import ResponsesStream, answer_text, usage_of
from gateway.providers.seam import UpstreamResponse
from gateway.providers.transport import Transport
from policies.errors import UpstreamError

PATHS = {"chat": "/chat/completions", "embeddings": "/embeddings", "responses": "/responses"}
CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})


class OpenAIProvider:
    def __init__(self, name: str, base_url: str, api_key: str, transport: Transport) -> None:
        self.name = name
        self._base = base_url.rstrip("/")
        self._transport = transport
        self._headers = {
            "authorization": f"Bearer {api_key}",
            "content-type": "application/json",
            "accept-encoding": "identity",
        }

    def __repr__(self) -> str:
        return f"OpenAIProvider({self.name!r}, {self._base!r})"

    def incompatible(self, endpoint: Endpoint, body: Mapping[str, Any]) -> str | None:
        return None  # the client's own API: everything passes through as it is

    def _request(self, call: UpstreamCall) -> tuple[str, dict[str, str], bytes]:
        body: dict[str, Any] = dict(call.body)
        body["model"] = call.upstream_model
        if call.stream and call.endpoint == "chat":
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
        headers = {**call.headers, **self._headers}
        return self._base + PATHS[call.endpoint], headers, orjson.dumps(body)

    async def complete(self, call: UpstreamCall) -> Completed:
        url, headers, content = self._request(call)
        response = await self._transport.post(url, headers, content, stream=False)
        body = response.content
        payload = json_or_none(body)
        block = payload.get("usage") if isinstance(payload, dict) else None
        usage = usage_of(block) if call.endpoint == "responses" else from_openai(block)
        if response.status_code >= 400:
            code = openai_error_code(payload)
            raise self._transport.fail(
                response, body, context_window=code in CONTEXT_CODES, usage=usage
            )
        if not isinstance(payload, dict):
            raise not_json(self.name, response.status_code)
        model = payload.get("model")
        return Completed(
            response.status_code,
            pass_headers(response.headers),
            body,
            usage,
            model if isinstance(model, str) else None,
            "" if usage.complete else _text(call, payload),
        )

    async def stream(self, call: UpstreamCall) -> OpenAIStream | ResponsesStream:
        url, headers, content = self._request(call)
        response = await self._transport.post(url, headers, content, stream=True, call=call)
        if response.status_code >= 400:
            body = await self._transport.read_error(response)
            code = openai_error_code(json_or_none(body))
            raise self._transport.fail(response, body, context_window=code in CONTEXT_CODES)
        if call.endpoint == "responses":
            return ResponsesStream(self.name, response, self._transport)
        wants_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
        return OpenAIStream(self.name, response, self._transport, strip_usage=not wants_usage)


class OpenAIStream:
    """An OpenAI SSE stream: forwards events as they come, without re-serialising them.

    Malformed events are dropped (counted in ``state.anomalies``); the usage chunk we
    asked for on the caller's behalf is stripped; ``[DONE]`` is not forwarded (the
    relay sends it once the attempt is settled); a stream that ends after its
    ``finish_reason`` but without ``[DONE]`` is finished properly; one that ends
    before a ``finish_reason`` raises a stream error.
    """

    def __init__(
        self,
        provider: str,
        response: UpstreamResponse,
        transport: Transport,
        *,
        strip_usage: bool,
    ) -> None:
        self.provider = provider
        self.status = response.status_code
        self.headers = pass_headers(response.headers)
        self.state = StreamState()
        self._response = response
        self._transport = transport
        self._strip_usage = strip_usage
        self._decoder = transport.decoder()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        decoder = self._decoder
        async for events in self._transport.events(self._response, self.state, decoder):
            # One write per network read: events that arrived together leave together.
            out = [f for e in events if (f := self._on_event(e.data)) is not None]
            if out:
                yield b"".join(out)
            if self.state.done:
                return
        for event in decoder.flush():
            frame = self._on_event(event.data)
            if frame is not None:
                yield frame
        if not self.state.done:
            if self.state.finish_reason is None:
                raise stream_broken(self.provider, "ended before the answer finished")
            self.state.anomalies.append("missing_done")
            self.state.done = True

    def _on_event(self, data: bytes) -> bytes | None:
        if data == sse.DONE:
            self.state.done = True
            return None
        chunk = self.state.event_object(data)
        if chunk is None:
            return None
        if self.state.response_id is None and isinstance(chunk.get("id"), str):
            self.state.response_id = chunk["id"]
        usage = chunk.get("usage")
        if usage:
            self.state.usage = self.state.usage.merge(from_openai(usage))
            self.state.usage_final = True
        choices = chunk.get("choices")
        if not choices:
            if chunk.get("error") is not None:  # the upstream's own in-stream error
                self.state.ended_by_upstream = True
                detail = self._transport.scrub(str(chunk["error"])[:MAX_DETAIL])
                raise stream_broken(self.provider, f"reported an error: {detail}")
            return None if (usage and self._strip_usage) else sse.frame(data)
        self._observe(choices[0])
        return sse.frame(data)

    def _observe(self, choice: Any) -> None:
        if not isinstance(choice, dict):
            return
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str) and content:
                self.state.add_text(content)
                self.state.content_seen = True
            calls = delta.get("tool_calls")
            if calls:
                self.state.tool_seen = True
            for call in calls or ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    for part in (function.get("name"), function.get("arguments")):
                        if isinstance(part, str) and part:
                            self.state.add_text(part)
                            self.state.content_seen = True
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self.state.finish_reason = reason

    async def aclose(self, *, stop: bool = False) -> None:
        """Close the upstream; what it already sent us still counts (the meter sees it)."""
        await self._transport.end_stream(
            self._response, self._decoder, self.state, self._absorb, stop=stop
        )

    def _absorb(self, event: sse.Event) -> None:
        with contextlib.suppress(UpstreamError):  # an error event: its state is recorded
            self._on_event(event.data)


def _text(call: UpstreamCall, payload: dict[str, Any]) -> str:
    return answer_text(payload) if call.endpoint == "responses" else _answer_text(payload)


def _answer_text(payload: dict[str, Any]) -> str:
    parts: list[str] = []
    for choice in payload.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        if isinstance(message.get("content"), str):
            parts.append(message["content"])
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                parts += [
                    v
                    for v in (function.get("name"), function.get("arguments"))
                    if isinstance(v, str)
                ]
    return "".join(parts)
