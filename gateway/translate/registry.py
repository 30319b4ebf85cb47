"""Which translator serves a (client API, provider kind) pair.

A provider speaks its own APIs natively (OpenAI-kind: Chat Completions, Embeddings,
Responses; Anthropic-kind: Messages, and Chat Completions through its own translation).
A client API the provider does not speak is translated to one it does, by the pair's
own module: Responses on an Anthropic provider goes to its Messages API
(``responses_anthropic``); Messages on an OpenAI provider goes by way of
Chat Completions (``messages_chat``); both are a ``Pivot``. The request is translated, the
provider serves it, and its answer, stream events and error bodies are translated back.
The pipeline picks the adapter per attempt, so a fallback may cross providers; the rest
of the request path is the same for every API.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson

from gateway import sse
from gateway.providers.base import Completed, Endpoint, Provider, UpstreamCall, UpstreamStream
from gateway.providers.classify import json_or_none
from gateway.runtime import ModelRuntime
from gateway.translate import messages_chat, responses_anthropic, responses_chat
from gateway.translate.common import JSON, TranslationError
from gateway.translate.errors import upstream_body_for
from gateway.translate.messages_chat_stream import ChatToMessagesStream
from gateway.translate.reasoning import openai_reasons
from gateway.translate.responses_anthropic_stream import AnthropicToResponsesStream
from policies.errors import UpstreamError


class EventTranslator(Protocol):
    def feed(self, chunk: JSON) -> list[bytes]: ...

    def terminal(self) -> bytes: ...


class Adapter(Protocol):
    def incompatible(self, provider: Provider, call_endpoint: Any, body: JSON) -> str | None: ...

    async def complete(self, provider: Provider, call: UpstreamCall) -> Completed: ...

    async def stream(self, provider: Provider, call: UpstreamCall) -> UpstreamStream: ...


class Native:
    """The provider speaks the client's API itself."""

    def incompatible(self, provider: Provider, call_endpoint: Any, body: JSON) -> str | None:
        return provider.incompatible(call_endpoint, body)

    async def complete(self, provider: Provider, call: UpstreamCall) -> Completed:
        return await provider.complete(call)

    async def stream(self, provider: Provider, call: UpstreamCall) -> UpstreamStream:
        return await provider.stream(call)


@dataclass(frozen=True)
class Pivot:
    """The client's API on another API the provider speaks, by the pair's module: the
    request is translated (``request(body, call)``; ``call`` is None for a check), the
    provider serves it natively, and its answer, stream events and error bodies are
    translated back."""

    api: str  # the client's
    endpoint: Endpoint  # the provider's: "chat" or "messages"
    request: Callable[[JSON, UpstreamCall | None], JSON]  # raises TranslationError
    answer: Callable[[JSON, JSON], JSON]  # (provider's answer, client's body)
    events: Callable[[JSON], EventTranslator]
    error_body: Callable[[int, bytes, str], bytes]  # (status, provider's body, message)

    def _call(self, provider: Provider, call: UpstreamCall) -> UpstreamCall:
        try:
            body = self.request(dict(call.body), call)
        except TranslationError as exc:
            raise refused(self.api, provider, exc) from None
        headers = call.headers
        if self.endpoint != "messages":
            headers = {k: v for k, v in headers.items() if not k.startswith("anthropic-")}
        return replace(call, endpoint=self.endpoint, body=body, headers=headers)

    def incompatible(self, provider: Provider, call_endpoint: Any, body: JSON) -> str | None:
        try:
            translated = self.request(dict(body), None)
        except TranslationError as exc:
            return exc.message
        return provider.incompatible(self.endpoint, translated)

    async def complete(self, provider: Provider, call: UpstreamCall) -> Completed:
        upstream = self._call(provider, call)
        try:
            done = await provider.complete(upstream)
        except UpstreamError as exc:
            raise self._reshaped(exc) from None
        payload = json_or_none(done.body)
        translated = self.answer(payload if isinstance(payload, dict) else {}, dict(call.body))
        headers = {"content-type": "application/json"}
        return Completed(
            done.status, headers, orjson.dumps(translated), done.usage, done.model, done.text
        )

    async def stream(self, provider: Provider, call: UpstreamCall) -> UpstreamStream:
        upstream = self._call(provider, call)
        try:
            inner = await provider.stream(upstream)
        except UpstreamError as exc:
            raise self._reshaped(exc) from None
        return PivotStream(inner, self.events(dict(call.body)))

    def _reshaped(self, exc: UpstreamError) -> UpstreamError:
        """An upstream error whose body the client sees, in the client's shape."""
        if exc.body is not None:
            exc.body = self.error_body(exc.status or 502, exc.body, exc.message)
        return exc


def refused(api: str, provider: Provider, exc: TranslationError) -> UpstreamError:
    """A request the pair cannot translate: a 400 in the client's shape, never sent."""
    return UpstreamError(
        f"cannot translate the request for {provider.name}: {exc.message}",
        kind="client_error",
        status=400,
        body=upstream_body_for(api, 400, exc.message, exc.param),
        reached=False,
    )


def _messages_to_chat(body: JSON, call: UpstreamCall | None) -> JSON:
    chat = messages_chat.to_chat_request(body)
    if call is not None and "reasoning_effort" in chat and not openai_reasons(call.upstream_model):
        del chat["reasoning_effort"]  # from thinking: a model that cannot reason refuses it
    return chat


def _chat_error_as_messages(status: int, body: bytes, message: str) -> bytes:
    payload = json_or_none(body)
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message"))
    return upstream_body_for("messages", status, message, None)


def _responses_to_messages(body: JSON, call: UpstreamCall | None) -> JSON:
    if call is None:
        return responses_anthropic.to_anthropic_request(body, "check", 4096)
    return responses_anthropic.to_anthropic_request(
        body, call.upstream_model, call.max_output_tokens
    )


def _messages_as_response(message: JSON, body: JSON) -> JSON:
    return responses_anthropic.from_anthropic_response(message, body, int(time.time()))


class PivotStream:
    """A provider stream's events, translated into the client's API as they pass; its
    state (what settlement reads), status and closing are the inner stream's."""

    def __init__(self, inner: UpstreamStream, events: EventTranslator) -> None:
        self.inner = inner
        self.state = inner.state
        self.status = inner.status
        self.headers = {**inner.headers, "content-type": "text/event-stream"}
        self._events = events

    async def __aiter__(self) -> AsyncIterator[bytes]:
        decoder = sse.Decoder()
        async for frames in self.inner:
            out: list[bytes] = []
            for event in decoder.feed(frames):
                chunk = json_or_none(event.data)
                if isinstance(chunk, dict):
                    out += self._events.feed(chunk)
            if out:
                yield b"".join(out)

    def terminal(self) -> bytes:
        return self._events.terminal()

    async def aclose(self, *, stop: bool = False) -> None:
        await self.inner.aclose(stop=stop)


NATIVE = Native()
ADAPTERS: Mapping[tuple[str, str], Adapter] = {
    ("responses", "anthropic"): Pivot(
        "responses",
        "messages",
        _responses_to_messages,
        _messages_as_response,
        AnthropicToResponsesStream,
        lambda status, body, _message: responses_anthropic.error_body(status, body),
    ),
    ("messages", "openai"): Pivot(
        "messages",
        "chat",
        _messages_to_chat,
        messages_chat.from_chat_response,
        ChatToMessagesStream,
        _chat_error_as_messages,
    ),
}


def adapter(api: str, provider_kind: str) -> Adapter:
    return ADAPTERS.get((api, provider_kind), NATIVE)


def terminal(stream: UpstreamStream) -> bytes:
    """The stream's last event, sent once the attempt is settled (``[DONE]`` for chat)."""
    own = getattr(stream, "terminal", None)
    if callable(own):
        frame = own()
        if isinstance(frame, bytes):
            return frame
    return sse.DONE_FRAME


def incompatible(api: str, body: JSON, m: ModelRuntime, primary: ModelRuntime) -> str | None:
    """Why model ``m`` cannot take over ``body`` from ``primary`` faithfully (None: it can)."""
    why = pinned(api, body, m.provider.name, primary.provider.name)
    if why is not None:
        return why
    return adapter(api, m.provider_kind).incompatible(m.provider, api, body)


def pinned(api: str, body: JSON, provider: str, primary_provider: str) -> str | None:
    """Why ``provider`` cannot take over a request whose state lives at the primary's."""
    held = responses_chat.stateful(body) if api == "responses" else None
    if held is None or provider == primary_provider:
        return None
    return (
        f"'{held}' keeps the conversation's state at the provider {primary_provider!r}: "
        "the request is pinned to it (no cross-provider fallback)"
    )
