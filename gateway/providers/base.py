"""The provider seam: one small protocol, one file per upstream API.

A provider translates the client's OpenAI-shaped request for its API, sends it over
its transport (the upstream seam, ``seam.py``), and classifies every failure ONCE
into a ``policies.errors.UpstreamError``. Only ``complete`` and ``stream`` touch the
network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from accounting.usage import Usage

Endpoint = Literal["chat", "embeddings", "responses", "messages"]

# Response headers of an upstream that reach the client (besides our own).
PASS_RESPONSE_HEADERS = frozenset({"content-type", "openai-processing-ms"})


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    endpoint: Endpoint
    body: Mapping[str, Any]  # the client's parsed body, never mutated
    upstream_model: str
    stream: bool
    headers: Mapping[str, str]  # traceparent, x-request-id: passed to the upstream
    deadline: float  # loop time by which the whole call must end
    max_output_tokens: int = 4096  # for APIs that require max_tokens
    first_token_s: float | None = None  # a stream's headers must come by then
    idle_s: float | None = None  # silence allowed between a stream's events


@dataclass(slots=True)
class Completed:
    status: int
    headers: dict[str, str]
    body: bytes
    usage: Usage
    model: str | None = None
    text: str = ""  # the answer's text, only when usage is incomplete (to estimate it)


KEPT_TEXT_CHARS = 256 * 1024


@dataclass(slots=True)
class StreamState:
    """What a stream has told us so far; read by the meter, even after a cut."""

    usage: Usage = field(default_factory=Usage)
    # Whether ``usage`` is the provider's final word: OpenAI's usage chunk comes once,
    # at the end; Anthropic's counts are provisional until the stop_reason event.
    usage_final: bool = False
    finish_reason: str | None = None
    done: bool = False
    # The upstream ended the stream itself (its end of body, a reset, an error event):
    # it generated nothing more. False when we closed it (the client left, a timeout).
    ended_by_upstream: bool = False
    text: list[str] = field(default_factory=list)  # content and tool-call arguments
    content_seen: bool = False  # content (text or tool arguments) went to the client
    kept_chars: int = 0
    # Text beyond KEPT_TEXT_CHARS is not kept: only its UTF-8 size, which bounds its
    # tokens (a byte-level BPE token is at least one byte), so a huge stream costs
    # neither memory nor minutes of tokenizing.
    overflow_bytes: int = 0
    anomalies: list[str] = field(default_factory=list)
    text_source: Callable[[], str] | None = None  # for decoders that keep the text
    visible_source: Callable[[], str] | None = None  # the text the client saw, if not ``text``
    response_id: str | None = None  # the upstream's id for the answer (chunks carry it)
    tool_seen: bool = False  # a tool call started: such a stream is not continued

    def event_object(self, data: bytes) -> dict[str, Any] | None:
        """An event's data as the JSON object it must be; anything else is noted as a
        malformed event and skipped (None)."""
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            self.anomalies.append("malformed_event")
            return None
        return parsed

    def add_text(self, text: str) -> None:
        if self.kept_chars < KEPT_TEXT_CHARS:
            self.text.append(text)
            self.kept_chars += len(text)
        else:
            self.overflow_bytes += len(text.encode("utf-8", "surrogatepass"))

    def visible_text(self) -> str:
        """The answer's text as the client received it (a continuation's prefill)."""
        return self.visible_source() if self.visible_source else "".join(self.text)

    def received_text(self) -> str:
        """What the provider generated that arrived and was kept (for accounting; see
        ``overflow_bytes`` for the rest)."""
        return self.text_source() if self.text_source else "".join(self.text)


class UpstreamStream(Protocol):
    state: StreamState
    status: int
    headers: dict[str, str]

    def __aiter__(self) -> AsyncIterator[bytes]:
        """Framed SSE bytes for the client, without the terminal event (``[DONE]``):
        the relay sends that itself once the attempt is settled. Ends when the
        upstream finished (``state.done``); raises UpstreamError(kind="stream_error")
        when it broke."""
        ...

    async def aclose(self, *, stop: bool = False) -> None:
        """Done with the stream. ``stop``: we cut it while it still generated, so the
        upstream is told to stop and what it had already sent is collected and counted
        (``Transport.stop``); else a stream whose content is complete keeps its
        connection and any other is closed."""
        ...


class Provider(Protocol):
    name: str

    def incompatible(self, endpoint: Endpoint, body: Mapping[str, Any]) -> str | None:
        """Why this API cannot faithfully serve ``body`` (None: it can)."""
        ...

    async def complete(self, call: UpstreamCall) -> Completed: ...

    async def stream(self, call: UpstreamCall) -> UpstreamStream:
        """Return once the upstream accepted the stream (status 2xx)."""
        ...


def pass_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() in PASS_RESPONSE_HEADERS}
