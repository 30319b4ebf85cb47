"""Golden tests of the Messages <-> Chat Completions translator (messages -> openai)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.translate.common import TranslationError
from gateway.translate.messages_chat import from_chat_response, to_chat_request
from gateway.translate.messages_chat_stream import ChatToMessagesStream

TOOL_TURN: dict[str, Any] = {
    "model": "gpt-4o",
    "max_tokens": 200,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hm", "signature": "s"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "t1", "name": "weather", "input": {"c": "P"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "text", "text": "sunny"}],
                },
                {"type": "text", "text": "And tomorrow?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
                },
            ],
        },
    ],
    "tools": [{"name": "weather", "description": "w", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "stop_sequences": ["END"],
    "metadata": {"user_id": "u1"},
    "top_k": 3,
    "stream": True,
}

TOOL_TURN_AS_CHAT = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"c": "P"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And tomorrow?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
            ],
        },
    ],
    "max_tokens": 200,
    "stream": True,
    "stop": ["END"],
    "stream_options": {"include_usage": True},
    "user": "u1",
    "tools": [
        {
            "type": "function",
            "function": {"name": "weather", "parameters": {"type": "object"}, "description": "w"},
        }
    ],
    "tool_choice": "required",
    "parallel_tool_calls": False,
}


def test_a_tool_turn_becomes_the_same_chat_request() -> None:
    assert to_chat_request(TOOL_TURN) == TOOL_TURN_AS_CHAT


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, "low"),
        ({"type": "enabled", "budget_tokens": 4095}, "low"),
        ({"type": "enabled", "budget_tokens": 4096}, "medium"),
        ({"type": "enabled", "budget_tokens": 16383}, "medium"),
        ({"type": "enabled", "budget_tokens": 16384}, "high"),
        ({"type": "enabled", "budget_tokens": 64000}, "high"),
        ({"type": "enabled", "budget_tokens": 1023}, None),  # below Anthropic's minimum
        ({"type": "enabled", "budget_tokens": True}, None),
        ({"type": "enabled"}, None),
        ({"type": "disabled"}, None),
        ({"type": "adaptive"}, None),
        (None, None),
    ],
)
def test_thinking_becomes_reasoning_effort_where_it_maps(
    thinking: dict[str, Any] | None, effort: str | None
) -> None:
    body = {"model": "m", "max_tokens": 20000, "messages": [{"role": "user", "content": "Hi"}]}
    out = to_chat_request({**body, "thinking": thinking})
    assert out.get("reasoning_effort") == effort
    assert "thinking" not in out


def test_blocks_without_a_chat_equivalent_are_refused() -> None:
    body = {
        "model": "m",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": [{"type": "document"}]}],
    }
    with pytest.raises(TranslationError, match="document"):
        to_chat_request(body)


def test_a_chat_answer_becomes_a_message() -> None:
    completion = {
        "id": "abc",
        "choices": [
            {
                "message": {
                    "content": "Calling.",
                    "tool_calls": [
                        {"id": "c1", "function": {"name": "f", "arguments": '{"a": 1}'}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 4,
            "prompt_tokens_details": {"cached_tokens": 6},
        },
    }
    assert from_chat_response(completion, {"model": "gpt-4o"}) == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "gpt-4o",
        "content": [
            {"type": "text", "text": "Calling."},
            {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 4,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 6,
            "output_tokens": 4,
        },
    }


def _events(frames: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in b"".join(frames).split(b"\n\n"):
        if frame:
            name, data = frame.split(b"\n", 1)
            out.append((name.decode().removeprefix("event: "), orjson.loads(data[6:])))
    return out


def test_a_chat_stream_becomes_anthropic_events() -> None:
    tr = ChatToMessagesStream({"model": "gpt-4o"})
    delta = lambda d, f=None: {"id": "x", "choices": [{"delta": d, "finish_reason": f}]}  # noqa: E731
    frames = [
        *tr.feed(delta({"role": "assistant", "content": ""})),
        *tr.feed(delta({"content": "Hi"})),
        *tr.feed(
            delta(
                {
                    "tool_calls": [
                        {"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}
                    ]
                }
            )
        ),
        *tr.feed(delta({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})),
        *tr.feed(delta({}, "tool_calls")),
        *tr.feed({"id": "x", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}),
        tr.terminal(),
    ]
    events = _events(frames)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(name == data["type"] for name, data in events)
    assert events[0][1]["message"]["id"] == "msg_x"
    assert events[4][1]["content_block"] == {
        "type": "tool_use",
        "id": "c1",
        "name": "f",
        "input": {},
    }
    assert events[5][1]["delta"] == {"type": "input_json_delta", "partial_json": "{}"}
    assert events[7][1]["delta"]["stop_reason"] == "tool_use"
    assert events[7][1]["usage"]["output_tokens"] == 3


def test_a_stream_without_usage_still_ends_properly() -> None:
    tr = ChatToMessagesStream({"model": "m"})
    tr.feed({"choices": [{"delta": {"content": "a"}, "finish_reason": "stop"}]})
    names = [name for name, _ in _events([tr.terminal()])]
    assert names == ["message_delta", "message_stop"]
