"""A continued stream is one stream for the client: the splice's rewriting."""

from __future__ import annotations

import json

from accounting.usage import Usage
from gateway.providers.base import StreamState
from gateway.splice import Splice
from gateway.sse import Decoder, frame


def chunk(delta: dict[str, object], finish: str | None = None, cid: str = "msg_2") -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return frame(
        json.dumps({"id": cid, "object": "chat.completion.chunk", "choices": [choice]}).encode()
    )


def events(data: bytes) -> list[dict[str, object]]:
    return [json.loads(e.data) for e in Decoder().feed(data)]


def test_the_first_stream_passes_untouched() -> None:
    splice = Splice(include_usage=False)
    raw = chunk({"role": "assistant", "content": "hi"}, cid="chatcmpl-1")
    assert splice.out(raw) == raw


def test_a_continuation_takes_the_first_id_drops_its_role_and_the_dropped_space() -> None:
    splice = Splice(include_usage=True)
    first = StreamState(response_id="chatcmpl-1")
    first.add_text(" the cat ")
    splice.segment_ended(first, Usage(input_tokens=7, partial_output_tokens=2))
    splice.continuing(" the cat")  # Anthropic: no trailing whitespace in a prefill
    out = events(
        splice.out(chunk({"role": "assistant", "content": ""}) + chunk({"content": " and dog"}))
    )
    assert out == [
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": "and dog"}, "finish_reason": None}],
        }
    ]
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    tail = splice.out(frame(json.dumps({"id": "msg_2", "choices": [], "usage": usage}).encode()))
    assert events(tail)[0]["usage"] == {
        "prompt_tokens": 17,
        "completion_tokens": 7,
        "total_tokens": 24,
    }


def test_usage_is_held_back_when_the_client_did_not_ask_for_it() -> None:
    splice = Splice(include_usage=False)
    splice.continuing("")
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    assert splice.out(frame(json.dumps({"choices": [], "usage": usage}).encode())) == b""
    assert events(splice.out(chunk({}, "stop")))[0]["choices"][0]["finish_reason"] == "stop"
