"""Anthropic's Messages API behind the OpenAI chat-completions shape.

The translation is pure (``anthropic_translate``, ``anthropic_stream``); this file
only sends and classifies.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from gateway import sse
from gateway.providers import anthropic_messages
from gateway.providers.anthropic_messages import MessagesStream, Target, sync_state
from gateway.providers.anthropic_stream import (
    AnthropicStreamTranslator,
    error_to_openai,
    from_anthropic_response,
    is_context_window_error,
    usage_from_anthropic,
)
from gateway.providers.anthropic_translate import (
    TranslationError,
    structured_output,
    to_anthropic_request,
)
from gateway.providers.base import (
    Completed,
    Endpoint,
    StreamState,
    UpstreamCall,
    pass_headers,
)
from gateway.providers.classify import MAX_DETAIL, json_or_none, not_json, stream_broken
from gateway.providers.seam import UpstreamResponse
from gateway.providers.transport import Transport
from policies.errors import UpstreamError


class AnthropicProvider:
    def __init__(
        self, name: str, base_url: str, api_key: str, transport: Transport, *, version: str
    ) -> None:
        self.name = name
        self._url = base_url.rstrip("/") + "/v1/messages"
        self._transport = transport
        self._headers = {
            "x-api-key": api_key,
            "anthropic-version": version,
            "content-type": "application/json",
            "accept-encoding": "identity",
        }
        self.native = Target(name, base_url.rstrip("/"), self._headers, transport)

    def __repr__(self) -> str:
        return f"AnthropicProvider({self.name!r}, {self._url!r})"

    def incompatible(self, endpoint: Endpoint, body: Mapping[str, Any]) -> str | None:
        """What the translation to the Messages API refuses (it translates faithfully
        or not at all)."""
        if endpoint == "messages":
            return None  # its own API
        if endpoint != "chat":
            return "it has no embeddings endpoint"
        try:
            to_anthropic_request(dict(body), "check", 1)
        except TranslationError as exc:
            return exc.message
        return None

    def _request(self, call: UpstreamCall) -> bytes:
        if call.endpoint != "chat":
            raise UpstreamError(
                f"{self.name} (Anthropic) has no embeddings endpoint",
                kind="client_error",
                status=400,
                body=_openai_error("this model does not support embeddings", "model"),
            )
        try:
            body = to_anthropic_request(
                dict(call.body), call.upstream_model, call.max_output_tokens
            )
        except TranslationError as exc:
            raise UpstreamError(
                f"cannot translate the request for {self.name}: {exc}",
                kind="client_error",
                status=400,
                body=_openai_error(str(exc), exc.param),
            ) from None
        return orjson.dumps(body)

    def _fail(self, response: UpstreamResponse, body: bytes) -> UpstreamError:
        payload = json_or_none(body)
        usage = None
        if isinstance(payload, dict) and isinstance(payload.get("usage"), dict):
            usage = usage_from_anthropic(payload["usage"])
        return self._transport.fail(
            response,
            orjson.dumps(error_to_openai(response.status_code, payload)),
            context_window=is_context_window_error(response.status_code, payload),
            usage=usage,
        )

    async def complete(self, call: UpstreamCall) -> Completed:
        if call.endpoint == "messages":
            return await anthropic_messages.complete(self.native, call)
        content = self._request(call)
        headers = {**call.headers, **self._headers}
        response = await self._transport.post(self._url, headers, content, stream=False)
        body = response.content
        if response.status_code >= 400:
            raise self._fail(response, body)
        payload = json_or_none(body)
        if not isinstance(payload, dict):
            raise not_json(self.name, response.status_code)
        model = str(call.body.get("model", call.upstream_model))
        translated = from_anthropic_response(payload, model, int(time.time()), _forced(call))
        usage = usage_from_anthropic(payload.get("usage"))
        out_headers = {"content-type": "application/json"}
        return Completed(
            response.status_code, out_headers, orjson.dumps(translated), usage, call.upstream_model
        )

    async def count_tokens(self, body: dict[str, Any], headers: Mapping[str, str]) -> Any:
        """The provider's own count of a Messages request's prompt: (status, body)."""
        return await anthropic_messages.count_tokens(self.native, body, headers)

    async def stream(self, call: UpstreamCall) -> AnthropicStream | MessagesStream:
        if call.endpoint == "messages":
            return await anthropic_messages.stream(self.native, call)
        content = self._request(call)
        headers = {**call.headers, **self._headers}
        response = await self._transport.post(self._url, headers, content, stream=True, call=call)
        if response.status_code >= 400:
            raise self._fail(response, await self._transport.read_error(response))
        wants_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
        model = str(call.body.get("model", call.upstream_model))
        translator = AnthropicStreamTranslator(model, int(time.time()), wants_usage, _forced(call))
        return AnthropicStream(self.name, response, self._transport, translator)


def _forced(call: UpstreamCall) -> str | None:
    """The forced tool standing for a JSON response_format, if the request asked one."""
    structured = structured_output(dict(call.body))
    return structured[0] if structured is not None else None


def _openai_error(message: str, param: str | None) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": "invalid_request",
            }
        }
    )


class AnthropicStream:
    """Anthropic SSE events -> OpenAI ``chat.completion.chunk`` events."""

    def __init__(
        self,
        provider: str,
        response: UpstreamResponse,
        transport: Transport,
        translator: AnthropicStreamTranslator,
    ) -> None:
        self.provider = provider
        self.status = response.status_code
        self.headers = {**pass_headers(response.headers), "content-type": "text/event-stream"}
        self.state = StreamState()
        self._response = response
        self._transport = transport
        self._tr = translator
        self.state.text_source = lambda: translator.generated_so_far
        self.state.visible_source = lambda: translator.text_so_far
        self._decoder = transport.decoder()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        decoder = self._decoder
        async for events in self._transport.events(self._response, self.state, decoder):
            out = [frame for event in events for frame in self._on_event(event)]
            if out:
                yield b"".join(out)
            if self.state.done:
                return
        if self._tr.finish_reason is None:
            raise stream_broken(self.provider, "ended before the answer finished")
        self.state.anomalies.append("missing_done")
        self.state.done = True

    def _on_event(self, event: sse.Event) -> list[bytes]:
        data = self.state.event_object(event.data)
        if data is None:
            return []
        chunks = self._tr.feed(event.event or data.get("type"), data)
        sync_state(self.state, self._tr)
        if self._tr.error is not None:
            self.state.ended_by_upstream = True
            detail = self._transport.scrub(str(self._tr.error)[:MAX_DETAIL])
            raise stream_broken(self.provider, f"reported an error: {detail}")
        return [sse.frame(orjson.dumps(chunk)) for chunk in chunks]

    async def aclose(self, *, stop: bool = False) -> None:
        """Close the upstream; what it already sent us still counts (the meter sees it)."""
        await self._transport.end_stream(
            self._response, self._decoder, self.state, self._absorb, stop=stop
        )

    def _absorb(self, event: sse.Event) -> None:
        with contextlib.suppress(UpstreamError):  # an error event: its state is recorded
            self._on_event(event)
