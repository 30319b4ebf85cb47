"""Golden tests of the Responses -> Chat Completions request translator (the chat view a
Responses prompt is counted by, and the requests pinned to their provider)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.translate.common import TranslationError
from gateway.translate.responses_chat import stateful, to_chat_request

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
