"""``chat.completion.chunk`` events -> Anthropic's Messages stream events (pure).

Feed each chunk in order; each call returns the SSE frames to send: ``message_start``
on the first chunk; per text run ``content_block_start`` (text), ``text_delta``s and
``content_block_stop``; per tool call ``content_block_start`` (tool_use),
``input_json_delta``s and ``content_block_stop``; ``message_delta`` with the stop reason
and the usage once both are known. ``terminal()`` is ``message_stop`` (preceded by the
``message_delta`` when the usage never came): the relay sends it once the attempt is
settled.
"""

from __future__ import annotations

import time

from gateway.translate.common import JSON, event_frame, obj
from gateway.translate.messages_chat import STOP_REASONS, message_shell, message_usage


class ChatToMessagesStream:
    def __init__(self, body: JSON) -> None:
        self._model = body.get("model")
        self._started = False
        self._index = -1  # the open content block's index
        self._open: str | None = None  # "text" | "tool" | None
        self._calls: dict[int, int] = {}  # chat tool-call index -> block index
        self._stop: str | None = None
        self._delta_sent = False

    def feed(self, chunk: JSON) -> list[bytes]:
        out: list[bytes] = []
        if not self._started:
            self._started = True
            ident = "msg_" + str(chunk.get("id") or f"{time.time_ns():x}")
            start = {"type": "message_start", "message": message_shell(ident, self._model)}
            out.append(event_frame("message_start", start))
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        if isinstance(choice, dict):
            out += self._choice(choice)
        if chunk.get("usage") and self._stop is not None and not self._delta_sent:
            out.append(self._message_delta(chunk["usage"]))
        return out

    def _choice(self, choice: JSON) -> list[bytes]:
        out: list[bytes] = []
        delta = obj(choice.get("delta"))
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self._open != "text":
                out += self._start({"type": "text", "text": ""}, "text")
            body = {"type": "text_delta", "text": text}
            out.append(self._delta(body))
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                out += self._tool(call)
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self._stop = STOP_REASONS.get(reason, "end_turn")
            out += self._stop_block()
        return out

    def _tool(self, call: JSON) -> list[bytes]:
        out: list[bytes] = []
        index = call.get("index", 0)
        function = obj(call.get("function"))
        if index not in self._calls:
            block: JSON = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{index}",
                "name": function.get("name") or "",
                "input": {},
            }
            out += self._start(block, "tool")
            self._calls[index] = self._index
        fragment = function.get("arguments")
        if isinstance(fragment, str) and fragment and self._calls[index] == self._index:
            out.append(self._delta({"type": "input_json_delta", "partial_json": fragment}))
        return out

    def _start(self, block: JSON, kind: str) -> list[bytes]:
        out = self._stop_block()
        self._index += 1
        self._open = kind
        start = {"type": "content_block_start", "index": self._index, "content_block": block}
        return [*out, event_frame("content_block_start", start)]

    def _delta(self, delta: JSON) -> bytes:
        data = {"type": "content_block_delta", "index": self._index, "delta": delta}
        return event_frame("content_block_delta", data)

    def _stop_block(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        data = {"type": "content_block_stop", "index": self._index}
        return [event_frame("content_block_stop", data)]

    def _message_delta(self, usage: object) -> bytes:
        self._delta_sent = True
        data = {
            "type": "message_delta",
            "delta": {"stop_reason": self._stop or "end_turn", "stop_sequence": None},
            "usage": message_usage(usage),
        }
        return event_frame("message_delta", data)

    def terminal(self) -> bytes:
        out = b"" if self._delta_sent else self._message_delta(None)
        return out + event_frame("message_stop", {"type": "message_stop"})
