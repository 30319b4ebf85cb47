"""``chat.completion.chunk`` events -> the Responses API's typed stream events (pure).

Feed each chunk in order; each call returns the SSE frames to send. The sequence:
``response.created``, ``response.in_progress``; per text answer
``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta``..., then ``.done`` events for the text, the part and the
item; per tool call ``response.output_item.added`` (a ``function_call``),
``response.function_call_arguments.delta``..., ``.done`` and ``output_item.done``.
``terminal()`` is the last event, ``response.completed`` (or ``response.incomplete``
when the output limit cut the answer) with the whole output and the usage: the relay
sends it once the attempt is settled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gateway.translate.common import JSON, event_frame, obj
from gateway.translate.responses_chat import (
    call_item,
    finished,
    message_item,
    response_shell,
    response_usage,
)


@dataclass
class _Call:
    item_id: str
    call_id: str
    name: str
    output_index: int
    arguments: list[str] = field(default_factory=list)


class ChatToResponsesStream:
    def __init__(self, body: JSON, created: int | None = None) -> None:
        self._body = body
        self._created = int(time.time()) if created is None else created
        self._id = ""
        self._seq = 0
        self._started = False
        self._output: list[JSON] = []
        self._text: list[str] = []
        self._text_index: int | None = None
        self._calls: dict[int, _Call] = {}
        self._open_call: _Call | None = None
        self._finish: str | None = None
        self._usage: object = None

    def _frame(self, kind: str, data: JSON) -> bytes:
        self._seq += 1
        return event_frame(kind, {"type": kind, "sequence_number": self._seq - 1, **data})

    def _response(self, status: str) -> JSON:
        response = response_shell(self._body, self._id, self._created, status)
        response["output"] = list(self._output)
        return response

    def feed(self, chunk: JSON) -> list[bytes]:
        out: list[bytes] = []
        if not self._started:
            self._started = True
            self._id = "resp_" + str(chunk.get("id") or f"{time.time_ns():x}")
            response = self._response("in_progress")
            out.append(self._frame("response.created", {"response": response}))
            out.append(self._frame("response.in_progress", {"response": response}))
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        if not isinstance(choice, dict):
            return out
        delta = obj(choice.get("delta"))
        if isinstance(delta.get("content"), str) and delta["content"]:
            out += self._text_delta(delta["content"])
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                out += self._call_delta(call)
        if isinstance(choice.get("finish_reason"), str):
            self._finish = choice["finish_reason"]
            out += self._close_text() + self._close_call()
        return out

    def _text_delta(self, text: str) -> list[bytes]:
        out = self._close_call()
        item_id = self._id.replace("resp_", "msg_", 1)
        if self._text_index is None:
            self._text_index = len(self._output)
            self._output.append(message_item(item_id, "", "in_progress"))
            where: JSON = {"output_index": self._text_index}
            item = message_item(item_id, "", "in_progress")
            part = {"type": "output_text", "text": "", "annotations": []}
            out.append(self._frame("response.output_item.added", {**where, "item": item}))
            out.append(
                self._frame(
                    "response.content_part.added",
                    {**where, "item_id": item_id, "content_index": 0, "part": part},
                )
            )
        self._text.append(text)
        where = {"item_id": item_id, "output_index": self._text_index, "content_index": 0}
        return [
            *out,
            self._frame("response.output_text.delta", {**where, "delta": text, "logprobs": []}),
        ]

    def _close_text(self) -> list[bytes]:
        index = self._text_index
        if index is None or self._output[index]["status"] == "completed":
            return []
        text = "".join(self._text)
        item = self._output[index] = message_item(self._output[index]["id"], text)
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        return [
            self._frame("response.output_text.done", {**where, "text": text, "logprobs": []}),
            self._frame("response.content_part.done", {**where, "part": item["content"][0]}),
            self._frame("response.output_item.done", {"output_index": index, "item": item}),
        ]

    def _call_delta(self, call: JSON) -> list[bytes]:
        index = call.get("index", 0)
        function = obj(call.get("function"))
        out: list[bytes] = []
        known = self._calls.get(index)
        if known is None:
            out += self._close_text() + self._close_call()
            call_id = str(call.get("id") or f"call_{index}")
            known = _Call(
                f"fc_{self._id[5:]}_{index}",
                call_id,
                str(function.get("name") or ""),
                len(self._output),
            )
            self._calls[index] = self._open_call = known
            item = call_item(known.item_id, call_id, known.name, "", "in_progress")
            self._output.append(item)
            out.append(
                self._frame(
                    "response.output_item.added", {"output_index": known.output_index, "item": item}
                )
            )
        fragment = function.get("arguments")
        if isinstance(fragment, str) and fragment:
            known.arguments.append(fragment)
            where = {"item_id": known.item_id, "output_index": known.output_index}
            out.append(
                self._frame("response.function_call_arguments.delta", {**where, "delta": fragment})
            )
        return out

    def _close_call(self) -> list[bytes]:
        call, self._open_call = self._open_call, None
        if call is None:
            return []
        arguments = "".join(call.arguments) or "{}"
        item = call_item(call.item_id, call.call_id, call.name, arguments, "completed")
        self._output[call.output_index] = item
        where = {"item_id": call.item_id, "output_index": call.output_index}
        return [
            self._frame("response.function_call_arguments.done", {**where, "arguments": arguments}),
            self._frame(
                "response.output_item.done", {"output_index": call.output_index, "item": item}
            ),
        ]

    def terminal(self) -> bytes:
        """The last event: the whole response, its status and usage."""
        response = finished(self._response(""), self._finish)
        response["usage"] = response_usage(self._usage)
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return self._frame(kind, {"response": response})
