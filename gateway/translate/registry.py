"""Which translator serves a (client API, provider kind) pair.

A provider speaks its own APIs natively (OpenAI-kind: Chat Completions, Embeddings,
Responses; Anthropic-kind: Messages, and Chat Completions through its own translation).
A client API the provider does not speak goes by way of Chat Completions: the request is
translated to a chat request (``<api>_chat``), the provider serves that, and its answer,
stream events and error bodies are translated back. The pipeline picks the adapter per
attempt, so a fallback may cross providers; the rest of the request path is the same
for every API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson

from gateway import sse
from gateway.providers.base import Completed, Provider, UpstreamCall, UpstreamStream
from gateway.providers.classify import json_or_none
from gateway.runtime import ModelRuntime
from gateway.translate import messages_chat, responses_chat
from gateway.translate.common import JSON, TranslationError
from gateway.translate.errors import upstream_body_for
from gateway.translate.messages_chat_stream import ChatToMessagesStream
from gateway.translate.responses_chat_stream import ChatToResponsesStream
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
class ViaChat:
    """The client's API by way of Chat Completions on the provider."""

    api: str
    to_chat: Callable[[JSON], JSON]
    from_chat: Callable[[JSON, JSON], JSON]
    events: Callable[[JSON], EventTranslator]

    def _chat_call(self, provider: Provider, call: UpstreamCall) -> UpstreamCall:
        try:
            body = self.to_chat(dict(call.body))
        except TranslationError as exc:
            message = f"cannot translate the request for {provider.name}: {exc.message}"
            raise UpstreamError(
                message,
                kind="client_error",
                status=400,
                body=upstream_body_for(self.api, 400, exc.message, exc.param),
                reached=False,
            ) from None
        headers = {k: v for k, v in call.headers.items() if not k.startswith("anthropic-")}
        return replace(call, endpoint="chat", body=body, headers=headers)

    def incompatible(self, provider: Provider, call_endpoint: Any, body: JSON) -> str | None:
        try:
            chat = self.to_chat(dict(body))
        except TranslationError as exc:
            return exc.message
        return provider.incompatible("chat", chat)

    async def complete(self, provider: Provider, call: UpstreamCall) -> Completed:
        chat_call = self._chat_call(provider, call)
        try:
            done = await provider.complete(chat_call)
        except UpstreamError as exc:
            raise self._reshaped(exc) from None
        payload = json_or_none(done.body)
        translated = self.from_chat(payload if isinstance(payload, dict) else {}, dict(call.body))
        headers = {"content-type": "application/json"}
        return Completed(
            done.status, headers, orjson.dumps(translated), done.usage, done.model, done.text
        )

    async def stream(self, provider: Provider, call: UpstreamCall) -> UpstreamStream:
        chat_call = self._chat_call(provider, call)
        try:
            inner = await provider.stream(chat_call)
        except UpstreamError as exc:
            raise self._reshaped(exc) from None
        return PivotStream(inner, self.events(dict(call.body)))

    def _reshaped(self, exc: UpstreamError) -> UpstreamError:
        """An upstream error whose body the client sees, in the client's shape."""
        if exc.body is not None and self.api == "messages":
            payload = json_or_none(exc.body)
            error = payload.get("error") if isinstance(payload, dict) else None
            message = str(error.get("message")) if isinstance(error, dict) else exc.message
            exc.body = upstream_body_for("messages", exc.status or 502, message, None)
        return exc


class PivotStream:
    """A chat stream's events, translated into the client's API as they pass."""

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
    ("responses", "anthropic"): ViaChat(
        "responses",
        responses_chat.to_chat_request,
        lambda completion, body: responses_chat.from_chat_response(completion, body),
        ChatToResponsesStream,
    ),
    ("messages", "openai"): ViaChat(
        "messages",
        messages_chat.to_chat_request,
        messages_chat.from_chat_response,
        ChatToMessagesStream,
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
