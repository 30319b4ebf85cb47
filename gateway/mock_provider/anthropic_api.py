"""Anthropic's Messages endpoint, as the mock answers it.

Usage follows Anthropic's convention: ``input_tokens`` excludes cache reads and cache
writes, which are reported separately as ``cache_read_input_tokens`` and
``cache_creation_input_tokens`` (the stats record keeps the full prompt count in
``prompt_tokens``, the cache reads in ``cached_tokens`` and the writes in
``cache_write_tokens``).

A request with ``thinking: {"type": "enabled"}`` gets a thinking block (``THOUGHT``,
signed) before the answer, streamed as ``thinking_delta``s and a ``signature_delta``;
its tokens are output, as Anthropic bills them: in ``output_tokens`` and in the stats
record's ``completion_tokens`` (on top of the answer's: the mock does not take them
from ``max_tokens``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from gateway.mock_provider import errors, tokens
from gateway.mock_provider.exchange import JSON_TYPE, SSE_HEADERS
from gateway.mock_provider.flow import Call
from gateway.mock_provider.forced import forced_tool_call
from gateway.mock_provider.generation import (
    Plan,
    StreamEvents,
    run_partial_body,
    run_stream,
)
from gateway.mock_provider.script import Step

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
MALFORMED = b"event: content_block_delta\ndata: {not json\n\n"
THOUGHT = "The user wants a short answer, so I will keep it brief."
SIGNATURE = "mock-signature"
Thought = tuple[tuple[str, int], ...]


def thought(body: dict[str, Any]) -> Thought:
    """The thinking a request asks for, in fragments with their tokens (none if not)."""
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return ()
    return tuple(tokens.token_fragments(THOUGHT))


def thought_tokens(pieces: Thought) -> int:
    return sum(count for _, count in pieces)


def sse(event: str, document: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(document) + b"\n\n"


def usage_block(plan: Plan, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": plan.prompt_tokens - plan.cached_tokens - plan.cache_write_tokens,
        "cache_creation_input_tokens": plan.cache_write_tokens,
        "cache_read_input_tokens": plan.cached_tokens,
        "output_tokens": output_tokens,
    }


class MessagesApi:
    id_header = "request-id"

    def credential(self, headers: dict[str, str]) -> str | None:
        return headers.get("x-api-key")

    def reject(self, headers: dict[str, str], body: Any) -> tuple[int, dict[str, Any]] | None:
        if not headers.get("x-api-key", "").strip():
            return 401, errors.anthropic_error(
                "authentication_error", "x-api-key header is required"
            )
        if not headers.get("anthropic-version", "").strip():
            return 400, errors.anthropic_error(
                "invalid_request_error", "anthropic-version: header is required"
            )
        if not isinstance(body, dict):
            return 400, errors.anthropic_error(
                "invalid_request_error", "The request body is not valid JSON."
            )
        if not isinstance(body.get("model"), str) or not body["model"]:
            return 400, errors.anthropic_error("invalid_request_error", "model: Field required")
        return None

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        return tokens.chat_prompt_tokens(body.get("messages"), body.get("system"))

    def error_body(self, status: int, prompt_tokens: int, step: Step) -> dict[str, Any]:
        return errors.anthropic_default_error(
            status, prompt_tokens, context_window=step.context_window
        )

    def error_usage(self, prompt_tokens: int) -> dict[str, Any]:
        return {"input_tokens": prompt_tokens, "output_tokens": 0}

    def prefill(self, body: dict[str, Any]) -> str | None:
        """Anthropic continues a final assistant message (prefill)."""
        messages = body.get("messages")
        last = messages[-1] if isinstance(messages, list) and messages else None
        if not isinstance(last, dict) or last.get("role") != "assistant":
            return None
        return tokens.content_text(last.get("content"))

    def prefill_error(self, prefill: str, step: Step) -> dict[str, Any] | None:
        if step.reject_prefill:
            message = (
                "This model does not support assistant message prefill. "
                "The conversation must end with a user message."
            )
            return errors.anthropic_error("invalid_request_error", message)
        if prefill != prefill.rstrip():
            message = "final assistant content cannot end with trailing whitespace"
            return errors.anthropic_error("invalid_request_error", message)
        return None

    def abandoned_tokens(self, call: Call) -> int:
        plan = call.plan()
        return plan.completion_tokens + thought_tokens(thought(call.body))

    async def generate(self, call: Call) -> None:
        forced = forced_tool_call(call.body) if call.step.tool_call is None else None
        if forced is not None:  # a model made to call a tool calls it
            call.step = replace(call.step, tool_call=forced)
        record, step = call.record, call.step
        plan, thinking = call.plan(), thought(call.body)
        record.cached_tokens = plan.cached_tokens
        record.cache_write_tokens = plan.cache_write_tokens
        if call.body.get("stream") is True:
            events = _stream_events(plan, record.id, thinking, usage=step.usage)
            error = {"type": "overloaded_error", "message": "Overloaded" + call.echo()}
            events.error = sse("error", {"type": "error", "error": error})
            record.completion_tokens = thought_tokens(thinking)  # sent before the answer
            await run_stream(call.ex, record, step, events, call.headers(*SSE_HEADERS))
            return
        document = _message(plan, record.id, thinking)
        if not step.usage:
            del document["usage"]
        payload = orjson.dumps(document)
        # generated (billed) in full
        record.completion_tokens = plan.completion_tokens + thought_tokens(thinking)
        if await run_partial_body(call.ex, record, step, payload, call.headers(JSON_TYPE)):
            return
        record.status, record.outcome = 200, "ok"
        await call.ex.respond(200, payload, call.headers(JSON_TYPE))


def _tool_use_id(record_id: int) -> str:
    return f"toolu_mock{record_id:08d}"


def _message(plan: Plan, record_id: int, thinking: Thought) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": plan.text}
    if plan.tool is not None:
        block = {
            "type": "tool_use",
            "id": _tool_use_id(record_id),
            "name": plan.tool.name,
            "input": plan.tool.input,
        }
    content = [block]
    if thinking:
        text = "".join(piece for piece, _ in thinking)
        content.insert(0, {"type": "thinking", "thinking": text, "signature": SIGNATURE})
    return {
        "id": f"msg_mock{record_id:08d}",
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": content,
        "stop_reason": STOP_REASONS[plan.finish],
        "stop_sequence": None,
        "usage": usage_block(plan, plan.completion_tokens + thought_tokens(thinking)),
    }


def _thinking_events(thinking: Thought) -> list[bytes]:
    """The thinking block (index 0) of a stream, before the answer's block."""
    if not thinking:
        return []
    block = {"type": "thinking", "thinking": "", "signature": ""}
    start = {"type": "content_block_start", "index": 0, "content_block": block}
    deltas = [_delta({"type": "thinking_delta", "thinking": piece}, 0) for piece, _ in thinking]
    signed = _delta({"type": "signature_delta", "signature": SIGNATURE}, 0)
    stop = sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    return [sse("content_block_start", start), *deltas, signed, stop]


def _stream_events(plan: Plan, record_id: int, thinking: Thought, *, usage: bool) -> StreamEvents:
    message: dict[str, Any] = {
        "id": f"msg_mock{record_id:08d}",
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if usage:
        message["usage"] = usage_block(plan, 1)
    head = [sse("message_start", {"type": "message_start", "message": message})]
    head += _thinking_events(thinking)
    index = 1 if thinking else 0  # the answer's block
    ping = sse("ping", {"type": "ping"})
    if plan.tool is None:
        start = {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "text", "text": ""},
        }
        head += [sse("content_block_start", start), ping]
        content = [
            (_delta({"type": "text_delta", "text": piece}, index), n) for piece, n in plan.pieces
        ]
    else:
        head.append(ping)
        content = _tool_events(plan, record_id, index)
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": STOP_REASONS[plan.finish], "stop_sequence": None},
    }
    if usage:
        delta["usage"] = {"output_tokens": plan.completion_tokens + thought_tokens(thinking)}
    tail = [
        sse("content_block_stop", {"type": "content_block_stop", "index": index}),
        sse("message_delta", delta),
    ]
    terminal = sse("message_stop", {"type": "message_stop"})
    return StreamEvents(head, content, tail, terminal, MALFORMED)


def _delta(delta: dict[str, Any], index: int) -> bytes:
    data = {"type": "content_block_delta", "index": index, "delta": delta}
    return sse("content_block_delta", data)


def _tool_events(plan: Plan, record_id: int, index: int) -> list[tuple[bytes, int]]:
    assert plan.tool is not None
    block = {"type": "tool_use", "id": _tool_use_id(record_id), "name": plan.tool.name, "input": {}}
    start = {"type": "content_block_start", "index": index, "content_block": block}
    content = [(sse("content_block_start", start), plan.tool_name_tokens)]
    for piece, count in plan.pieces:
        delta = {"type": "input_json_delta", "partial_json": piece}
        content.append((_delta(delta, index), count))
    return content
