"""Golden tests of the Responses <-> Chat Completions translator (responses -> anthropic
goes through it, then through the chat -> anthropic translator)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.providers.anthropic_translate import to_anthropic_request
from gateway.translate.common import TranslationError
from gateway.translate.responses_chat import from_chat_response, stateful, to_chat_request
from gateway.translate.responses_chat_stream import ChatToResponsesStream

AGENT_TURN: dict[str, Any] = {
    "model": "gpt-4o",
    "instructions": "You are terse.",
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"c":"P"}'},
        {"type": "function_call", "call_id": "c2", "name": "time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"text": "noon"}]},
    ],
    "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
    "tool_choice": {"type": "function", "name": "weather"},
    "max_output_tokens": 300,
    "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
    "reasoning": {"effort": "low"},
    "stream": True,
}

AGENT_TURN_AS_CHAT = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"c":"P"}'},
                },
                {"id": "c2", "type": "function", "function": {"name": "time", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "noon"},
    ],
    "stream": True,
    "max_completion_tokens": 300,
    "stream_options": {"include_usage": True},
    "tools": [
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    ],
    "tool_choice": {"type": "function", "function": {"name": "weather"}},
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object"}},
    },
    "reasoning_effort": "low",
}


def test_an_agent_turn_becomes_the_same_chat_request() -> None:
    assert to_chat_request(AGENT_TURN) == AGENT_TURN_AS_CHAT


def test_and_then_an_anthropic_request() -> None:
    chat = to_chat_request({**AGENT_TURN, "text": None, "tool_choice": "auto"})
    out = to_anthropic_request(chat, "claude-sonnet-4-5", 1024)
    assert out["system"] == "You are terse." and out["max_tokens"] == 300
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert [b["type"] for b in out["messages"][1]["content"]] == ["tool_use", "tool_use"]
    assert out["messages"][2]["content"][0]["tool_use_id"] == "c1"


def test_a_string_input_is_one_user_message() -> None:
    assert to_chat_request({"model": "m", "input": "hi"}) == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [("previous_response_id", "resp_1"), ("store", True), ("background", True)],
)
def test_state_at_the_provider_is_refused(field: str, value: object) -> None:
    body = {"model": "m", "input": "hi", field: value}
    assert stateful(body) == field
    with pytest.raises(TranslationError, match="no cross-provider fallback"):
        to_chat_request(body)


def test_built_in_tools_are_refused() -> None:
    with pytest.raises(TranslationError, match="built-in tools"):
        to_chat_request({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]})


def test_a_chat_answer_becomes_a_response() -> None:
    completion = {
        "id": "abc",
        "created": 7,
        "choices": [
            {
                "message": {
                    "content": "It is sunny.",
                    "tool_calls": [{"id": "c9", "function": {"name": "f", "arguments": "{}"}}],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 4,
            "prompt_tokens_details": {"cached_tokens": 2},
        },
    }
    response = from_chat_response(completion, {"model": "claude-sonnet", "input": "x"})
    assert response["id"] == "resp_abc" and response["status"] == "completed"
    assert response["output"] == [
        {
            "type": "message",
            "id": "msg_abc",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []}],
        },
        {
            "type": "function_call",
            "id": "fc_abc_0",
            "call_id": "c9",
            "name": "f",
            "arguments": "{}",
            "status": "completed",
        },
    ]
    assert response["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 2},
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 14,
    }


def test_a_length_cut_answer_is_incomplete() -> None:
    completion = {"choices": [{"message": {"content": "x"}, "finish_reason": "length"}]}
    response = from_chat_response(completion, {"model": "m"})
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}


def _events(frames: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for frame in b"".join(frames).split(b"\n\n"):
        if frame:
            name, data = frame.split(b"\n", 1)
            event = orjson.loads(data.removeprefix(b"data: "))
            assert name == b"event: " + event["type"].encode()
            out.append(event)
    return out


def test_a_chat_stream_becomes_the_typed_event_sequence() -> None:
    tr = ChatToResponsesStream({"model": "claude-sonnet"}, created=1)
    delta = lambda d, f=None: {"id": "x", "choices": [{"delta": d, "finish_reason": f}]}  # noqa: E731
    frames = [
        *tr.feed(delta({"role": "assistant", "content": ""})),
        *tr.feed(delta({"content": "Hel"})),
        *tr.feed(delta({"content": "lo"})),
        *tr.feed(
            delta(
                {
                    "tool_calls": [
                        {"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}
                    ]
                }
            )
        ),
        *tr.feed(delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":1}'}}]})),
        *tr.feed(delta({}, "tool_calls")),
        *tr.feed({"id": "x", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}),
        tr.terminal(),
    ]
    events = _events(frames)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert final["output"][1]["arguments"] == '{"a":1}' and final["output"][1]["call_id"] == "c1"
    assert final["usage"]["input_tokens"] == 5 and final["usage"]["output_tokens"] == 3
