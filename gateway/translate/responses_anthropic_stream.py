"""Anthropic Messages stream events -> the Responses API's typed stream events (pure).

The stream side of the responses -> anthropic pair (``responses_anthropic``). Feed each
Anthropic event's data in order; each call returns the SSE frames to send:

* ``message_start`` -> ``response.created``, ``response.in_progress``;
* a ``text`` block -> ``response.output_item.added`` (a message),
  ``response.content_part.added``, ``response.output_text.delta`` per ``text_delta``,
  and on its ``content_block_stop`` ``response.output_text.done``,
  ``response.content_part.done``, ``response.output_item.done``;
* a ``tool_use`` block -> ``response.output_item.added`` (a ``function_call``),
  ``response.function_call_arguments.delta`` per ``input_json_delta``, then
  ``response.function_call_arguments.done`` (``{}`` when no argument came) and
  ``response.output_item.done``; the forced tool of a JSON ``text.format`` streams as
  the message's text instead;
* a ``thinking`` block -> ``response.output_item.added`` (a reasoning item),
  ``response.reasoning_summary_part.added``, ``response.reasoning_summary_text.delta``
  per ``thinking_delta``, then ``response.reasoning_summary_text.done``,
  ``response.reasoning_summary_part.done``, ``response.output_item.done``
  (``signature_delta`` and redacted thinking show nothing);
* ``message_delta`` -> nothing (its stop reason and usage are kept), ``message_stop``,
  ``ping`` -> nothing; ``error`` -> a Responses ``error`` event.

``terminal()`` is the last event, ``response.completed`` (or ``response.incomplete``
when the output limit or a refusal cut the answer) with the whole output and the usage,
after the ``.done`` events of any block left open: the relay sends it once the attempt
is settled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gateway.providers.anthropic_stream import absorb_usage
from gateway.providers.anthropic_usage import usage_from_anthropic
from gateway.translate.common import JSON, event_frame, obj
from gateway.translate.responses_anthropic import (
    call_item,
    error_event,
    finished,
    ident_of,
    message_item,
    reasoning_item,
    response_shell,
    response_usage,
    structured_name,
)

_PREFIXES = {"message": "msg", "function_call": "fc", "reasoning": "rs"}


@dataclass
class _Item:
    kind: str  # message | function_call | reasoning
    item_id: str
    output_index: int
    call_id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)
    json: bool = False  # its text is a JSON object: a tool's input ("{}" when none came)

    @property
    def text(self) -> str:
        return "".join(self.parts)


class AnthropicToResponsesStream:
    def __init__(self, body: JSON, created: int | None = None) -> None:
        self._body = body
        self._created = int(time.time()) if created is None else created
        self._forced = structured_name(body)
        self._ident = ""
        self._seq = 0
        self._output: list[JSON] = []
        self._open: dict[int, _Item] = {}  # Anthropic block index -> its item
        self._usage: dict[str, object] = {}
        self._stop: object = None

    def feed(self, chunk: JSON) -> list[bytes]:
        kind = chunk.get("type")
        out = self._start(chunk) if not self._ident else []
        if kind == "content_block_start":
            out += self._block_start(chunk)
        elif kind == "content_block_delta":
            out += self._block_delta(chunk)
        elif kind == "content_block_stop":
            item = self._open.pop(_index(chunk), None)
            out += self._close(item) if item is not None else []
        elif kind == "message_delta":
            absorb_usage(self._usage, chunk.get("usage"))
            self._stop = obj(chunk.get("delta")).get("stop_reason") or self._stop
        elif kind == "error":
            out.append(self._frame("error", error_event(chunk)))
        return out

    def _frame(self, kind: str, data: JSON) -> bytes:
        self._seq += 1
        return event_frame(kind, {"type": kind, "sequence_number": self._seq - 1, **data})

    def _response(self, status: str) -> JSON:
        response = response_shell(self._body, "resp_" + self._ident, self._created, status)
        response["output"] = list(self._output)
        return response

    def _start(self, chunk: JSON) -> list[bytes]:
        message = obj(chunk.get("message"))
        self._ident = ident_of(message.get("id"))
        absorb_usage(self._usage, message.get("usage"))
        response = self._response("in_progress")
        return [
            self._frame("response.created", {"response": response}),
            self._frame("response.in_progress", {"response": response}),
        ]

    def _block_start(self, chunk: JSON) -> list[bytes]:
        block, index = obj(chunk.get("content_block")), chunk.get("index")
        kind = block.get("type")
        if not isinstance(index, int) or index in self._open:
            return []
        json = kind == "tool_use"
        if json and self._forced is not None and block.get("name") == self._forced:
            kind = "text"  # the forced tool's input is the answer's text
        item_kind = {"text": "message", "tool_use": "function_call", "thinking": "reasoning"}
        if kind not in item_kind:
            return []  # redacted thinking, server tools: nothing to show
        item = _Item(item_kind[kind], "", len(self._output), json=json)
        item.item_id = f"{_PREFIXES[item.kind]}_{self._ident}_{index}"
        item.call_id, item.name = str(block.get("id") or ""), str(block.get("name") or "")
        self._open[index] = item
        self._output.append(self._snapshot(item, "in_progress"))
        where: JSON = {"output_index": item.output_index}
        out = [self._frame("response.output_item.added", {**where, "item": self._output[-1]})]
        out += self._part_added(item)
        text = block.get("text") if kind == "text" else None
        return out + (self._delta(item, text) if isinstance(text, str) and text else [])

    def _part_added(self, item: _Item) -> list[bytes]:
        where = {"item_id": item.item_id, "output_index": item.output_index}
        if item.kind == "message":
            part = {"type": "output_text", "text": "", "annotations": []}
            data = {**where, "content_index": 0, "part": part}
            return [self._frame("response.content_part.added", data)]
        if item.kind == "reasoning":
            part = {"type": "summary_text", "text": ""}
            data = {**where, "summary_index": 0, "part": part}
            return [self._frame("response.reasoning_summary_part.added", data)]
        return []

    def _block_delta(self, chunk: JSON) -> list[bytes]:
        item = self._open.get(_index(chunk))
        delta = obj(chunk.get("delta"))
        if item is None:
            return []
        kind = delta.get("type")
        text = {"text_delta": "text", "input_json_delta": "partial_json"}.get(str(kind))
        if kind == "thinking_delta" and item.kind == "reasoning":
            text = "thinking"
        fragment = delta.get(text) if text is not None else None
        if not isinstance(fragment, str) or not fragment:
            return []  # signature_delta, an empty fragment
        return self._delta(item, fragment)

    def _delta(self, item: _Item, fragment: str) -> list[bytes]:
        item.parts.append(fragment)
        where = {"item_id": item.item_id, "output_index": item.output_index}
        if item.kind == "message":
            data = {**where, "content_index": 0, "delta": fragment, "logprobs": []}
            return [self._frame("response.output_text.delta", data)]
        if item.kind == "reasoning":
            data = {**where, "summary_index": 0, "delta": fragment}
            return [self._frame("response.reasoning_summary_text.delta", data)]
        data = {**where, "delta": fragment}
        return [self._frame("response.function_call_arguments.delta", data)]

    def _snapshot(self, item: _Item, status: str) -> JSON:
        done = status == "completed"
        if item.kind == "message":
            return message_item(item.item_id, item.text, status)
        if item.kind == "reasoning":
            return reasoning_item(item.item_id, item.text if done else None)
        arguments = (item.text or "{}") if done else ""
        return call_item(item.item_id, item.call_id, item.name, arguments, status)

    def _close(self, item: _Item) -> list[bytes]:
        out: list[bytes] = []
        if item.json and not item.parts:
            out += self._delta(item, "{}")  # a tool with no input: an empty object
        final = self._output[item.output_index] = self._snapshot(item, "completed")
        out += [self._frame(kind, data) for kind, data in _done_events(item, final)]
        data = {"output_index": item.output_index, "item": final}
        return [*out, self._frame("response.output_item.done", data)]

    def terminal(self) -> bytes:
        """The last events: any block left open closed, then the whole response."""
        self._ident = self._ident or ident_of(None)
        out = [frame for index in sorted(self._open) for frame in self._close(self._open[index])]
        self._open.clear()
        response = finished(self._response(""), self._stop)
        response["usage"] = response_usage(usage_from_anthropic(self._usage))
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return b"".join([*out, self._frame(kind, {"response": response})])


def _index(chunk: JSON) -> int:
    index = chunk.get("index")
    return index if isinstance(index, int) else -1  # -1: no block has it


def _done_events(item: _Item, final: JSON) -> list[tuple[str, JSON]]:
    """The events that end an item's content, before its ``output_item.done``."""
    where: JSON = {"item_id": item.item_id, "output_index": item.output_index}
    if item.kind == "message":
        text: JSON = {**where, "content_index": 0, "text": item.text, "logprobs": []}
        part: JSON = {**where, "content_index": 0, "part": final["content"][0]}
        return [("response.output_text.done", text), ("response.content_part.done", part)]
    if item.kind == "reasoning":
        text = {**where, "summary_index": 0, "text": item.text}
        part = {**where, "summary_index": 0, "part": final["summary"][0]}
        return [
            ("response.reasoning_summary_text.done", text),
            ("response.reasoning_summary_part.done", part),
        ]
    return [("response.function_call_arguments.done", {**where, "arguments": final["arguments"]})]
