"""OpenAI's Responses endpoint, as the mock answers it (``POST /v1/responses``).

Prompt tokens follow the chat formula over the request's items: ``instructions`` counts
as a system message; each input item (a message's text, a function call's name and
arguments, a function call output) as one message. ``max_output_tokens`` caps the
answer. A stream is the typed event sequence (``response.created`` ...
``response.completed``, whose usage is the truth); ``no_done`` leaves out
``response.completed``; the in-stream error is an ``error`` event.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from gateway.mock_provider import tokens
from gateway.mock_provider.exchange import JSON_TYPE, SSE_HEADERS
from gateway.mock_provider.flow import Call
from gateway.mock_provider.generation import Plan, StreamEvents, run_partial_body, run_stream
from gateway.mock_provider.openai_api import OpenAIApi

MALFORMED = b"event: response.output_text.delta\ndata: {not json\n\n"


def _item_text(item: Any) -> str:
    if isinstance(item, str):
        return item
    if not isinstance(item, dict):
        return ""
    if item.get("type") == "function_call":
        return str(item.get("name") or "") + str(item.get("arguments") or "")
    if item.get("type") == "function_call_output":
        return tokens.content_text(item.get("output"))
    return tokens.content_text(item.get("content"))


def as_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    raw = body.get("input")
    items = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return [{"content": _item_text(item)} for item in items]


def usage_block(plan: Plan, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": plan.prompt_tokens,
        "input_tokens_details": {"cached_tokens": plan.cached_tokens},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": plan.prompt_tokens + output_tokens,
    }


class ResponsesApi(OpenAIApi):
    def prompt_tokens(self, body: dict[str, Any]) -> int:
        return tokens.chat_prompt_tokens(as_messages(body), body.get("instructions"))

    def prefill(self, body: dict[str, Any]) -> str | None:
        return None

    def abandoned_tokens(self, call: Call) -> int:
        return self._plan(call).completion_tokens

    def _plan(self, call: Call) -> Plan:
        cap = call.body.get("max_output_tokens")
        if isinstance(cap, int) and not isinstance(cap, bool):
            call = replace(call, body={**call.body, "max_tokens": cap})
        return call.plan()

    async def generate(self, call: Call) -> None:
        record, step = call.record, call.step
        plan = self._plan(call)
        record.cached_tokens = plan.cached_tokens
        ident = f"resp_mock{record.id:08d}"
        if call.body.get("stream") is True:
            events = _stream_events(plan, ident, int(record.started), usage=step.usage)
            error = {"type": "error", "code": "server_error", "param": None}
            error["message"] = "The server had an error while streaming." + call.echo()
            events.error = _sse("error", error)
            await run_stream(call.ex, record, step, events, call.headers(*SSE_HEADERS))
            return
        document = _response(plan, ident, int(record.started), "completed")
        if step.usage:
            document["usage"] = usage_block(plan, plan.completion_tokens)
        payload = orjson.dumps(document)
        record.completion_tokens = plan.completion_tokens
        if await run_partial_body(call.ex, record, step, payload, call.headers(JSON_TYPE)):
            return
        record.status, record.outcome = 200, "ok"
        await call.ex.respond(200, payload, call.headers(JSON_TYPE))


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def _output(plan: Plan, ident: str) -> dict[str, Any]:
    if plan.tool is not None:
        return {
            "type": "function_call",
            "id": "fc_" + ident[5:],
            "call_id": "call_" + ident[5:],
            "name": plan.tool.name,
            "arguments": plan.text,
            "status": "completed",
        }
    part = {"type": "output_text", "text": plan.text, "annotations": []}
    return {
        "type": "message",
        "id": "msg_" + ident[5:],
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }


def _response(plan: Plan, ident: str, created: int, status: str) -> dict[str, Any]:
    done = status != "in_progress"
    incomplete = done and plan.finish == "length"
    return {
        "id": ident,
        "object": "response",
        "created_at": created,
        "status": "incomplete" if incomplete else status,
        "model": plan.model,
        "output": [_output(plan, ident)] if done else [],
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "error": None,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": None,
    }


def _stream_events(plan: Plan, ident: str, created: int, *, usage: bool) -> StreamEvents:
    started = {"response": _response(plan, ident, created, "in_progress")}
    head = [_sse("response.created", started), _sse("response.in_progress", started)]
    item = _output(plan, ident)
    where = {"item_id": item["id"], "output_index": 0}
    if plan.tool is None:
        opening = {**item, "status": "in_progress", "content": []}
        head.append(_sse("response.output_item.added", {"output_index": 0, "item": opening}))
        part = {"type": "output_text", "text": "", "annotations": []}
        head.append(
            _sse("response.content_part.added", {**where, "content_index": 0, "part": part})
        )
        content = [
            (_sse("response.output_text.delta", {**where, "content_index": 0, "delta": p}), n)
            for p, n in plan.pieces
        ]
        tail = [
            _sse("response.output_text.done", {**where, "content_index": 0, "text": plan.text}),
            _sse(
                "response.content_part.done",
                {**where, "content_index": 0, "part": item["content"][0]},
            ),
        ]
    else:
        opening = {**item, "status": "in_progress", "arguments": ""}
        added = _sse("response.output_item.added", {"output_index": 0, "item": opening})
        content = [(added, plan.tool_name_tokens)]
        content += [
            (_sse("response.function_call_arguments.delta", {**where, "delta": p}), n)
            for p, n in plan.pieces
        ]
        tail = [_sse("response.function_call_arguments.done", {**where, "arguments": plan.text})]
    tail.append(_sse("response.output_item.done", {"output_index": 0, "item": item}))
    final = _response(plan, ident, created, "completed")
    if usage:
        final["usage"] = usage_block(plan, plan.completion_tokens)
    kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    return StreamEvents(head, content, tail, _sse(kind, {"response": final}), MALFORMED)
