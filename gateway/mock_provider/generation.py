"""What a successful answer contains, and how a scripted stream is delivered.

Both provider APIs share one plan (the words or tool-call fragments to send, and why
generation stopped) and one stream driver that applies the step's cuts: slow chunks,
a hang, an abrupt reset, a clean close, a malformed event, a missing terminator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.mock_provider import tokens
from gateway.mock_provider.exchange import Exchange, HeaderList, ScriptedReset
from gateway.mock_provider.script import Step, ToolCall
from gateway.mock_provider.stats import RequestRecord

DEFAULT_COMPLETION_TOKENS = 20


@dataclass(frozen=True, slots=True)
class Plan:
    model: str
    prompt_tokens: int
    cached_tokens: int
    # Text words, or (for a tool call) argument fragments, each with its token count.
    pieces: tuple[tuple[str, int], ...]
    finish: str  # "stop", "length" or "tool_calls"
    tool: ToolCall | None = None
    tool_name_tokens: int = 0
    cache_write_tokens: int = 0  # Anthropic only: prompt tokens written to the cache

    @property
    def completion_tokens(self) -> int:
        return self.tool_name_tokens + sum(count for _, count in self.pieces)

    @property
    def text(self) -> str:
        return "".join(piece for piece, _ in self.pieces)


def requested_cap(body: dict[str, Any]) -> int | None:
    """The request's output cap: ``max_completion_tokens`` or ``max_tokens``."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def make_plan(step: Step, model: str, prompt_tokens: int, cap: int | None, skip: int = 0) -> Plan:
    """The answer a successful step produces for this request; ``skip`` words of it
    were already written (a continuation's prefill), so it goes on from there."""
    cached = min(step.cached_tokens, prompt_tokens)
    written = min(step.cache_write_tokens, prompt_tokens - cached)
    if step.tool_call is not None:
        tool = step.tool_call
        pieces = tuple(tokens.token_fragments(tool.arguments))
        name_tokens = tokens.count_text(tool.name)
        return Plan(model, prompt_tokens, cached, pieces, "tool_calls", tool, name_tokens, written)
    wanted = DEFAULT_COMPLETION_TOKENS if step.completion_tokens is None else step.completion_tokens
    words = tokens.completion_words(wanted)[skip:]
    count = len(words) if cap is None else min(len(words), cap)
    finish = "length" if count < len(words) else "stop"
    pieces = tuple((word, 1) for word in words[:count])
    return Plan(model, prompt_tokens, cached, pieces, finish, cache_write_tokens=written)


@dataclass(slots=True)
class StreamEvents:
    """Encoded SSE events of one stream, in order."""

    head: list[bytes]  # before any content (role chunk, message_start, ...)
    content: list[tuple[bytes, int]]  # content chunks with the tokens each carries
    tail: list[bytes]  # finish chunk, usage chunk, ...
    terminal: bytes  # ``data: [DONE]`` or ``message_stop``: left out when no_done
    malformed: bytes  # the broken event inserted by ``malformed_at_chunk``
    error: bytes = b""  # the provider's in-stream error event (``error_after_chunks``)


def _cut_at(step: Step, total: int) -> tuple[str, int] | None:
    """The first scripted cut of the stream: (kind, content chunks sent before it)."""
    cuts = [
        (count, kind)
        for kind, count in (
            ("reset", step.reset_after_chunks),
            ("closed", step.close_after_chunks),
            ("hang", step.hang_after_chunks),
            ("error_event", step.error_after_chunks),
        )
        if count is not None
    ]
    if not cuts:
        return None
    count, kind = min(cuts)
    return kind, min(count, total)


async def _cut(ex: Exchange, record: RequestRecord, kind: str, error: bytes = b"") -> None:
    record.outcome = kind
    if kind == "reset":
        raise ScriptedReset("scripted connection reset")
    if kind == "error_event":  # as providers do: an error event, then the end of the body
        await ex.end(error)
        return
    if kind == "closed":
        await ex.end()
        return
    await ex.wait_disconnect()
    record.outcome = "cancelled"


async def run_stream(
    ex: Exchange, record: RequestRecord, step: Step, events: StreamEvents, headers: HeaderList
) -> None:
    """Deliver ``events`` as an SSE response, applying the step's cuts and delays."""
    await ex.start(200, headers)
    record.status = 200
    await ex.write(b"".join(events.head))
    cut = _cut_at(step, len(events.content))
    for index, (event, count) in enumerate(events.content):
        if cut is not None and cut[1] == index:
            return await _cut(ex, record, cut[0], events.error)
        if step.malformed_at_chunk == index:
            await ex.write(events.malformed)
        if step.chunk_delay_s and not await ex.pause(step.chunk_delay_s):
            record.outcome = "cancelled"
            return None
        if ex.disconnected:
            record.outcome = "cancelled"
            return None
        await ex.write(event)
        record.chunks_sent += 1
        record.completion_tokens += count
    if cut is not None:
        return await _cut(ex, record, cut[0], events.error)
    if step.malformed_at_chunk is not None and step.malformed_at_chunk >= len(events.content):
        await ex.write(events.malformed)
    if step.chunk_delay_s and not await ex.pause(step.chunk_delay_s):
        record.outcome = "cancelled"
        return None
    final = events.tail if step.no_done else [*events.tail, events.terminal]
    await ex.end(b"".join(final))
    record.outcome = "ok"
    return None


async def run_partial_body(
    ex: Exchange, record: RequestRecord, step: Step, body: bytes, headers: HeaderList
) -> bool:
    """Apply a stream cut to a non-streaming answer: send half the JSON body, then cut.

    Returns False (nothing done) when the step has no cut.
    """
    cut = _cut_at(step, 0)
    if cut is None:
        return False
    await ex.start(200, headers)
    record.status = 200
    await ex.write(body[: len(body) // 2])
    await _cut(ex, record, cut[0])
    return True
