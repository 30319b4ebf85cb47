"""OpenAI's Chat Completions and Embeddings endpoints, as the mock answers them."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from typing import Any

import orjson

from gateway.mock_provider import errors, tokens
from gateway.mock_provider.exchange import JSON_TYPE, SSE_HEADERS
from gateway.mock_provider.flow import Call
from gateway.mock_provider.generation import (
    Plan,
    StreamEvents,
    run_partial_body,
    run_stream,
)
from gateway.mock_provider.script import Step

EMBEDDING_DIMENSIONS = 8
DONE = b"data: [DONE]\n\n"
MALFORMED = b"data: {not json\n\n"
FINGERPRINT = "fp_mock"


def usage_block(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


class OpenAIApi:
    """Checks and errors shared by the OpenAI endpoints."""

    id_header = "x-request-id"

    def credential(self, headers: dict[str, str]) -> str | None:
        return headers.get("authorization")

    def reject(self, headers: dict[str, str], body: Any) -> tuple[int, dict[str, Any]] | None:
        auth = headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            message = "You didn't provide an API key. Pass it as 'Authorization: Bearer KEY'."
            return 401, errors.openai_error(message, "invalid_request_error", "invalid_api_key")
        if not isinstance(body, dict):
            return 400, errors.openai_error(
                "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        if not isinstance(body.get("model"), str) or not body["model"]:
            return 400, errors.openai_error(
                "you must provide a model parameter", "invalid_request_error", None, "model"
            )
        return None

    def error_body(self, status: int, prompt_tokens: int, step: Step) -> dict[str, Any]:
        return errors.openai_default_error(
            status,
            prompt_tokens,
            context_window=step.context_window,
            content_policy=step.content_policy,
        )

    def error_usage(self, prompt_tokens: int) -> dict[str, Any]:
        return usage_block(prompt_tokens, 0, 0)

    def prefill(self, body: dict[str, Any]) -> str | None:
        """vLLM's continuation: ``continue_final_message`` with a final assistant turn."""
        messages = body.get("messages")
        if body.get("continue_final_message") is not True or not isinstance(messages, list):
            return None
        last = messages[-1] if messages else None
        if not isinstance(last, dict) or last.get("role") != "assistant":
            return None
        return tokens.content_text(last.get("content"))

    def prefill_error(self, prefill: str, step: Step) -> dict[str, Any] | None:
        if not step.reject_prefill:
            return None
        message = "continue_final_message is not supported by this model"
        return errors.openai_error(message, "invalid_request_error", None, "messages")


class ChatCompletionsApi(OpenAIApi):
    def prompt_tokens(self, body: dict[str, Any]) -> int:
        return tokens.chat_prompt_tokens(body.get("messages"))

    def abandoned_tokens(self, call: Call) -> int:
        plan = call.plan()
        return plan.completion_tokens

    async def generate(self, call: Call) -> None:
        record = call.record
        plan = call.plan()
        record.cached_tokens = plan.cached_tokens
        options = call.body.get("stream_options")
        with_usage = isinstance(options, dict) and options.get("include_usage") is True
        if call.body.get("stream") is True:
            events = _stream_events(
                plan, record.id, int(record.started), with_usage=with_usage, usage=call.step.usage
            )
            error = {"message": "The server had an error while streaming." + call.echo()}
            events.error = b"data: " + orjson.dumps({"error": {**error, "type": "server_error"}})
            events.error += b"\n\n"
            await run_stream(call.ex, record, call.step, events, call.headers(*SSE_HEADERS))
            return
        document = _completion(plan, record.id, int(record.started))
        if not call.step.usage:
            del document["usage"]
        payload = orjson.dumps(document)
        record.completion_tokens = plan.completion_tokens  # generated (billed) in full
        if await run_partial_body(call.ex, record, call.step, payload, call.headers(JSON_TYPE)):
            return
        record.status, record.outcome = 200, "ok"
        await call.ex.respond(200, payload, call.headers(JSON_TYPE))


def _tool_call_id(record_id: int) -> str:
    return f"call_mock{record_id:08d}"


def _completion(plan: Plan, record_id: int, created: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": plan.text, "refusal": None}
    if plan.tool is not None:
        function = {"name": plan.tool.name, "arguments": plan.tool.arguments}
        message["content"] = None
        message["tool_calls"] = [
            {"id": _tool_call_id(record_id), "type": "function", "function": function}
        ]
    return {
        "id": f"chatcmpl-mock{record_id}",
        "object": "chat.completion",
        "created": created,
        "model": plan.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": plan.finish}
        ],
        "usage": usage_block(plan.prompt_tokens, plan.completion_tokens, plan.cached_tokens),
    }


def _stream_events(
    plan: Plan, record_id: int, created: int, *, with_usage: bool, usage: bool
) -> StreamEvents:
    base = {
        "id": f"chatcmpl-mock{record_id}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": plan.model,
        "system_fingerprint": FINGERPRINT,
    }
    send_usage = with_usage and usage

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        document: dict[str, Any] = {**base, "choices": [choice]}
        if send_usage:
            document["usage"] = None
        return b"data: " + orjson.dumps(document) + b"\n\n"

    if plan.tool is None:
        head = chunk({"role": "assistant", "content": "", "refusal": None})
        content = [(chunk({"content": piece}), count) for piece, count in plan.pieces]
    else:
        head = chunk({"role": "assistant", "content": None, "refusal": None})
        content = _tool_chunks(plan, _tool_call_id(record_id), chunk)
    tail = [chunk({}, plan.finish)]
    if send_usage:
        usage_doc = usage_block(plan.prompt_tokens, plan.completion_tokens, plan.cached_tokens)
        tail.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": usage_doc}) + b"\n\n")
    return StreamEvents([head], content, tail, DONE, MALFORMED)


def _tool_chunks(
    plan: Plan, call_id: str, chunk: Callable[[dict[str, Any]], bytes]
) -> list[tuple[bytes, int]]:
    assert plan.tool is not None
    opening = {
        "index": 0,
        "id": call_id,
        "type": "function",
        "function": {"name": plan.tool.name, "arguments": ""},
    }
    content = [(chunk({"tool_calls": [opening]}), plan.tool_name_tokens)]
    for piece, count in plan.pieces:
        delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
        content.append((chunk(delta), count))
    return content


class EmbeddingsApi(OpenAIApi):
    def prompt_tokens(self, body: dict[str, Any]) -> int:
        return tokens.embedding_tokens(tokens.embedding_inputs(body.get("input")))

    def abandoned_tokens(self, call: Call) -> int:
        return 0

    async def generate(self, call: Call) -> None:
        record = call.record
        as_base64 = call.body.get("encoding_format") == "base64"
        items = tokens.embedding_inputs(call.body.get("input"))
        data = [
            {"object": "embedding", "index": index, "embedding": _vector(item, as_base64)}
            for index, item in enumerate(items)
        ]
        document: dict[str, Any] = {"object": "list", "data": data, "model": call.model}
        if call.step.usage:
            document["usage"] = {
                "prompt_tokens": call.prompt_tokens,
                "total_tokens": call.prompt_tokens,
            }
        payload = orjson.dumps(document)
        if await run_partial_body(call.ex, record, call.step, payload, call.headers(JSON_TYPE)):
            return
        record.status, record.outcome = 200, "ok"
        await call.ex.respond(200, payload, call.headers(JSON_TYPE))


def _vector(item: Any, as_base64: bool) -> list[float] | str:
    """A deterministic vector derived from the input (not a real embedding)."""
    seed = zlib.crc32(orjson.dumps(item))
    vector = [((seed >> (4 * k)) & 0xF) / 8.0 - 1.0 for k in range(EMBEDDING_DIMENSIONS)]
    if as_base64:
        return base64.b64encode(struct.pack(f"<{EMBEDDING_DIMENSIONS}f", *vector)).decode()
    return vector
