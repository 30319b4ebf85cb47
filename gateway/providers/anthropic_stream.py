"""The Anthropic -> OpenAI direction: responses, usage, errors and streams (pure, no I/O).

``from_anthropic_response`` turns a Messages response into a ``chat.completion``;
``usage_from_anthropic``/``usage_to_openai`` convert usage blocks; ``error_to_openai`` and
the ``is_*_error`` classifiers (``anthropic_errors``) read Anthropic error bodies.

``AnthropicStreamTranslator`` is pure and stateful: feed every parsed SSE event (``event``
name and decoded ``data``) in order; each call returns the ``chat.completion.chunk`` dicts
to send. It does no I/O and never decides how a stream ends: after an ``error`` event it
only records the payload.

Stream mapping:

* ``message_start`` -> ``{"role": "assistant", "content": ""}`` chunk (records usage).
* ``text_delta`` -> ``{"content": text}``; thinking blocks and their deltas are dropped
  (their text is kept for accounting: ``generated_so_far``).
* ``tool_use`` block start -> a ``tool_calls`` chunk with id, name and ``arguments: ""``;
  ``input_json_delta`` -> argument fragments. A tool block that streamed no argument
  text at all gets one ``"{}"`` fragment on ``content_block_stop`` so clients can parse it.
* ``message_delta`` with a ``stop_reason`` -> ``{}`` delta with the mapped finish_reason,
  then the ``choices: []`` usage chunk when ``include_usage`` (the usage is final there).
* ``message_stop`` -> nothing; it marks the end of the stream (``stopped``).
* ``ping``, ``content_block_stop`` of text blocks and unknown events -> nothing.

Usage counts are cumulative on Anthropic's side: each raw counter keeps its latest value
and ``usage`` is derived from them (never summed across events). They are provisional
until the ``message_delta`` that carries a ``stop_reason`` (``usage_final``):
``message_start`` reports ``output_tokens: 1`` whatever follows, so a stream cut before
that event must be charged for what it really delivered, not for what it last said.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from accounting.usage import Usage
from gateway.providers.anthropic_errors import (
    error_to_openai,
    is_content_policy_error,
    is_context_window_error,
)
from gateway.providers.anthropic_usage import usage_from_anthropic, usage_to_openai

JSON = dict[str, Any]

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
KEPT_CHARS = 256 * 1024  # text kept for accounting; past it only its size is counted


def map_stop_reason(stop_reason: object) -> str | None:
    """Anthropic ``stop_reason`` -> OpenAI ``finish_reason`` (unknown reasons -> "stop")."""
    if stop_reason is None:
        return None
    return _STOP_REASONS.get(str(stop_reason), "stop")


def from_anthropic_response(
    resp: JSON, model: str, created: int, structured: str | None = None
) -> JSON:
    """Anthropic Messages response -> OpenAI ``chat.completion`` (thinking is dropped).
    With ``structured`` (the forced tool of a JSON ``response_format``), that tool's
    input is the answer: the message's content, as JSON."""
    texts: list[str] = []
    calls: list[JSON] = []
    content = resp.get("content")
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use" and structured and block.get("name") == structured:
            texts = [_compact(block.get("input") if block.get("input") is not None else {})]
        elif block.get("type") == "tool_use":
            calls.append(_tool_call(block))
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    finish = map_stop_reason(resp.get("stop_reason")) or "stop"
    choice: JSON = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": "stop" if structured and finish == "tool_calls" else finish,
    }
    out: JSON = {
        "id": str(resp.get("id") or ""),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
    }
    usage = resp.get("usage")
    if isinstance(usage, dict):
        out["usage"] = usage_to_openai(usage_from_anthropic(usage))
    return out


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _tool_call(block: JSON) -> JSON:
    arguments = block.get("input")
    return {
        "id": str(block.get("id") or ""),
        "type": "function",
        "function": {
            "name": str(block.get("name") or ""),
            "arguments": json.dumps(
                arguments if arguments is not None else {},
                ensure_ascii=False,
                separators=(",", ":"),
            ),
        },
    }


# ---------------------------------------------------------------------------- stream


def absorb_usage(raw: dict[str, object], block: object) -> None:
    """Keep each counter of a stream event's ``usage`` (cumulative: the latest wins)."""
    if not isinstance(block, dict):
        return
    for key, value in block.items():
        count = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        split = key == "cache_creation" and isinstance(value, dict)  # the 5m / 1h split
        if count or split:
            raw[key] = value


@dataclass(slots=True)
class _ToolBlock:
    index: int
    has_arguments: bool = False
    structured: bool = False  # the forced tool of a JSON response_format: its input is text


class AnthropicStreamTranslator:
    """Turns Anthropic stream events into OpenAI ``chat.completion.chunk`` dicts."""

    def __init__(
        self, model: str, created: int, include_usage: bool, structured: str | None = None
    ) -> None:
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._structured = structured
        self._id = ""
        self._raw_usage: dict[str, object] = {}
        self._tools: dict[int, _ToolBlock] = {}
        self._structured_blocks: dict[int, _ToolBlock] = {}
        self._finish_reason: str | None = None
        self._finished = False
        self._usage_final = False
        self._stopped = False
        self._error: JSON | None = None
        self._fragments: list[str] = []
        self._unseen: list[str] = []
        self._kept = 0
        self.overflow_bytes = 0  # text not kept (past KEPT_CHARS): its UTF-8 size

    @property
    def usage(self) -> Usage:
        """Latest cumulative usage seen so far (``None`` fields when not reported)."""
        return usage_from_anthropic(self._raw_usage)

    @property
    def usage_final(self) -> bool:
        """The usage is final: the ``message_delta`` with a stop_reason arrived."""
        return self._usage_final

    @property
    def message_id(self) -> str:
        return self._id

    @property
    def tool_seen(self) -> bool:
        """A tool_use block started."""
        return bool(self._tools)

    @property
    def stopped(self) -> bool:
        """``message_stop`` arrived: nothing more will come."""
        return self._stopped

    @property
    def finished(self) -> bool:
        """A ``message_stop`` or a ``message_delta`` carrying a stop_reason was seen."""
        return self._finished

    @property
    def finish_reason(self) -> str | None:
        return self._finish_reason

    @property
    def error(self) -> JSON | None:
        """The whole Anthropic ``error`` event payload, if one came."""
        return self._error

    @property
    def text_so_far(self) -> str:
        """All text and tool-argument fragments emitted so far."""
        return "".join(self._fragments)

    @property
    def generated_so_far(self) -> str:
        """Everything generated so far, for accounting: the text and tool arguments
        sent on, plus the thinking that is dropped (it is billed as output too)."""
        return "".join(self._unseen) + "".join(self._fragments)

    def feed(self, event: str | None, data: JSON) -> list[JSON]:
        """Translate one event; ``data["type"]`` wins over the SSE ``event`` name."""
        kind = data.get("type") if isinstance(data.get("type"), str) else event
        match kind:
            case "message_start":
                return self._on_message_start(data)
            case "content_block_start":
                return self._on_block_start(data)
            case "content_block_delta":
                return self._on_block_delta(data)
            case "content_block_stop":
                return self._on_block_stop(data)
            case "message_delta":
                return self._on_message_delta(data)
            case "message_stop":
                return self._on_message_stop()
            case "error":
                self._error = data
                return []
            case _:
                return []

    # ------------------------------------------------------------------ handlers

    def _on_message_start(self, data: JSON) -> list[JSON]:
        message = data.get("message")
        if isinstance(message, dict):
            self._id = str(message.get("id") or self._id)
            self._absorb_usage(message.get("usage"))
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_block_start(self, data: JSON) -> list[JSON]:
        block = data.get("content_block")
        index = data.get("index")
        if not isinstance(block, dict) or not isinstance(index, int):
            return []
        if block.get("type") == "text":
            return self._text_chunks(block.get("text"))
        if block.get("type") != "tool_use":
            return []
        if self._structured and block.get("name") == self._structured:
            self._structured_blocks[index] = _ToolBlock(index=0, structured=True)
            return []
        tool = _ToolBlock(index=len(self._tools))
        self._tools[index] = tool
        call = {
            "index": tool.index,
            "id": str(block.get("id") or ""),
            "type": "function",
            "function": {"name": str(block.get("name") or ""), "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _on_block_delta(self, data: JSON) -> list[JSON]:
        delta = data.get("delta")
        if not isinstance(delta, dict):
            return []
        if delta.get("type") == "text_delta":
            return self._text_chunks(delta.get("text"))
        if delta.get("type") == "thinking_delta" and isinstance(delta.get("thinking"), str):
            self._keep(self._unseen, delta["thinking"])  # billed output the client never sees
            return []
        tool = self._tool_at(data)
        fragment = delta.get("partial_json")
        if delta.get("type") != "input_json_delta" or tool is None:
            return []
        if not isinstance(fragment, str) or not fragment:
            return []
        tool.has_arguments = True
        if tool.structured:
            return self._text_chunks(fragment)
        return [self._arguments_chunk(tool, fragment)]

    def _on_block_stop(self, data: JSON) -> list[JSON]:
        tool = self._tool_at(data)
        if tool is None or tool.has_arguments:
            return []
        tool.has_arguments = True
        if tool.structured:
            return self._text_chunks("{}")
        return [self._arguments_chunk(tool, "{}")]

    def _on_message_delta(self, data: JSON) -> list[JSON]:
        self._absorb_usage(data.get("usage"))
        delta = data.get("delta")
        stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if stop_reason is None:
            return []
        self._finish_reason = map_stop_reason(stop_reason)
        if self._structured_blocks and self._finish_reason == "tool_calls":
            self._finish_reason = "stop"  # the forced tool was the answer, not a call
        self._finished = True
        self._usage_final = True
        chunks = [self._chunk({}, self._finish_reason)]
        if self._include_usage:
            chunk = self._envelope()
            chunk["choices"] = []
            chunk["usage"] = usage_to_openai(self.usage)
            chunks.append(chunk)
        return chunks

    def _on_message_stop(self) -> list[JSON]:
        self._finished = True
        self._stopped = True
        return []

    # ------------------------------------------------------------------- helpers

    def _absorb_usage(self, block: object) -> None:
        absorb_usage(self._raw_usage, block)

    def _tool_at(self, data: JSON) -> _ToolBlock | None:
        index = data.get("index")
        if not isinstance(index, int):
            return None
        return self._tools.get(index) or self._structured_blocks.get(index)

    def _text_chunks(self, text: object) -> list[JSON]:
        if not isinstance(text, str) or not text:
            return []
        self._keep(self._fragments, text)
        return [self._chunk({"content": text})]

    def _keep(self, where: list[str], text: str) -> None:
        if self._kept < KEPT_CHARS:
            where.append(text)
            self._kept += len(text)
        else:
            self.overflow_bytes += len(text.encode("utf-8", "surrogatepass"))

    def _arguments_chunk(self, tool: _ToolBlock, fragment: str) -> JSON:
        self._keep(self._fragments, fragment)
        call = {"index": tool.index, "function": {"arguments": fragment}}
        return self._chunk({"tool_calls": [call]})

    def _envelope(self) -> JSON:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }

    def _chunk(self, delta: JSON, finish_reason: str | None = None) -> JSON:
        chunk = self._envelope()
        chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        return chunk


__all__ = [
    "AnthropicStreamTranslator",
    "absorb_usage",
    "error_to_openai",
    "from_anthropic_response",
    "is_content_policy_error",
    "is_context_window_error",
    "map_stop_reason",
    "usage_from_anthropic",
    "usage_to_openai",
]
