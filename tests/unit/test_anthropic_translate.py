"""OpenAI Chat Completions <-> Anthropic Messages translation, on recorded-style payloads.

Fixtures in ``data/anthropic``: inputs with their expected outputs (``*.openai.json(l)``).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accounting.usage import Usage
from gateway.providers import anthropic_stream
from gateway.providers.anthropic_translate import (
    AnthropicStreamTranslator,
    TranslationError,
    error_to_openai,
    from_anthropic_response,
    is_content_policy_error,
    is_context_window_error,
    to_anthropic_request,
    usage_from_anthropic,
)

DATA = Path(__file__).parent / "data" / "anthropic"
MODEL = "claude-sonnet-4-5-20250929"
CREATED = 1_732_000_000
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
NAMED = {"type": "function", "function": {"name": "get_weather"}}


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def load_sse(name: str) -> list[tuple[str | None, dict[str, Any]]]:
    """Parse a recorded SSE body into (event, data) pairs."""
    events: list[tuple[str | None, dict[str, Any]]] = []
    event: str | None = None
    data_lines: list[str] = []
    for line in [*(DATA / name).read_text().splitlines(), ""]:
        if line.startswith("event:"):
            event = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data_lines.append(line[len("data:") :].strip())
        elif not line and data_lines:
            events.append((event, json.loads("\n".join(data_lines))))
            event, data_lines = None, []
    return events


def run_stream(
    name: str, include_usage: bool = True
) -> tuple[AnthropicStreamTranslator, list[Any]]:
    translator = AnthropicStreamTranslator(MODEL, CREATED, include_usage)
    chunks: list[Any] = []
    for event, data in load_sse(f"{name}.sse"):
        chunks.extend(translator.feed(event, data))
    return translator, chunks


def translate(body: dict[str, Any]) -> dict[str, Any]:
    return to_anthropic_request(body, MODEL, 4096)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def delta_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


# ------------------------------------------------------------------------ requests


@pytest.mark.parametrize("case", load("requests.json"), ids=lambda case: case["name"])
def test_recorded_requests(case: dict[str, Any]) -> None:
    snapshot = json.loads(json.dumps(case["openai"]))
    assert translate(case["openai"]) == case["anthropic"]
    assert case["openai"] == snapshot  # the input is never mutated


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (NAMED, None, {"type": "tool", "name": "get_weather"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (NAMED, False, {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        ("auto", True, {"type": "auto"}),
        (None, None, None),
    ],
)
def test_tool_choice_variants(choice: object, parallel: bool | None, expected: object) -> None:
    body: dict[str, Any] = {"messages": [user("Weather?")], "tools": [WEATHER_TOOL]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert translate(body).get("tool_choice") == expected


def test_tool_choice_without_tools() -> None:
    assert "tool_choice" not in translate({"messages": [user("Hi")], "tool_choice": "auto"})
    with pytest.raises(TranslationError) as info:
        translate({"messages": [user("Hi")], "tool_choice": NAMED})
    assert info.value.param == "tool_choice"


@pytest.mark.parametrize("arguments", ['{"location": "Par', "[1, 2]", "null", "", None])
def test_unparsable_tool_arguments_become_empty_input(arguments: str | None) -> None:
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    body = {"messages": [user("x"), {"role": "assistant", "tool_calls": [call]}]}
    assert translate(body)["messages"][1]["content"][0]["input"] == {}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, {"max_tokens": 4096}),
        ({"max_completion_tokens": 300}, {"max_tokens": 300}),
        ({"max_completion_tokens": 300, "max_tokens": 100}, {"max_tokens": 300}),
        ({"max_tokens": 100}, {"max_tokens": 100}),
        ({"temperature": -0.5}, {"max_tokens": 4096, "temperature": 0}),
        ({"temperature": 2}, {"max_tokens": 4096, "temperature": 1}),
        ({"temperature": 0.3}, {"max_tokens": 4096, "temperature": 0.3}),
        ({"top_p": 1}, {"max_tokens": 4096}),
        ({"top_p": 0}, {"max_tokens": 4096, "top_p": 0}),
        ({"stop": ["END", "", "STOP"]}, {"max_tokens": 4096, "stop_sequences": ["END", "STOP"]}),
        ({"stop": ""}, {"max_tokens": 4096}),
        ({"stop": []}, {"max_tokens": 4096}),
        ({"stream": False}, {"max_tokens": 4096, "stream": False}),
        ({"user": ""}, {"max_tokens": 4096}),
    ],
)
def test_defaults_and_clamping(extra: dict[str, Any], expected: dict[str, Any]) -> None:
    out = translate({"messages": [user("Hi")], **extra})
    assert {k: v for k, v in out.items() if k not in ("model", "messages")} == expected


def test_empty_text_and_empty_messages_are_dropped() -> None:
    body = {"messages": [user(""), {"role": "assistant", "content": ""}, user("Hi")]}
    assert translate(body)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]}
    ]


@pytest.mark.parametrize(
    ("effort", "max_tokens", "thinking"),
    [
        ("low", 4096, {"type": "enabled", "budget_tokens": 1024}),
        ("medium", 8192, {"type": "enabled", "budget_tokens": 4096}),
        ("high", 32000, {"type": "enabled", "budget_tokens": 16384}),
        ("high", 4096, {"type": "enabled", "budget_tokens": 4095}),  # below max_tokens
        ("low", 1024, None),  # no room for the 1024 minimum
        ("minimal", 4096, None),
        ("none", 4096, None),
    ],
)
def test_reasoning_effort_becomes_thinking(
    effort: str, max_tokens: int, thinking: dict[str, Any] | None
) -> None:
    body = {"messages": [user("Hi")], "reasoning_effort": effort, "max_tokens": max_tokens}
    out = translate({**body, "temperature": 0.3, "top_p": 0.5})
    assert out.get("thinking") == thinking
    if thinking is None:
        assert (out["temperature"], out["top_p"]) == (0.3, 0.5)
    else:  # Anthropic allows no sampling change with thinking on
        assert "temperature" not in out and "top_p" not in out


TOOL_LOOP = [
    user("Weather?"),
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "t1", "function": {"name": "get_weather", "arguments": "{}"}}],
    },
    {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
]


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [WEATHER_TOOL], "tool_choice": "required"},
        {"tools": [WEATHER_TOOL], "tool_choice": NAMED},
        {"response_format": {"type": "json_object"}},
        {"messages": TOOL_LOOP, "tools": [WEATHER_TOOL]},  # its thinking is not in the history
        {"messages": [user("Hi"), {"role": "assistant", "content": "Sure"}]},  # a prefill
    ],
    ids=["required", "named", "json", "tool-loop", "prefill"],
)
def test_thinking_is_left_out_where_anthropic_refuses_it(extra: dict[str, Any]) -> None:
    out = translate({"messages": [user("Hi")], "reasoning_effort": "high", **extra})
    assert "thinking" not in out


def test_an_unknown_reasoning_effort_is_refused() -> None:
    with pytest.raises(TranslationError) as info:
        translate({"messages": [user("Hi")], "reasoning_effort": "max"})
    assert info.value.param == "reasoning_effort"


def test_thinking_is_not_surfaced_in_chat_but_billed_as_output() -> None:
    resp = {
        "id": "msg_1",
        "content": [
            {"type": "thinking", "thinking": "Let me see.", "signature": "EqQB"},
            {"type": "redacted_thinking", "data": "EmwK"},
            {"type": "text", "text": "Hello."},
        ],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 90},  # thinking is in output_tokens
    }
    out = from_anthropic_response(resp, "m", CREATED)
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "Hello."}
    assert out["usage"]["completion_tokens"] == 90


@pytest.mark.parametrize("case", load("invalid_requests.json"), ids=lambda case: case["name"])
def test_invalid_input_raises_translation_error(case: dict[str, Any]) -> None:
    with pytest.raises(TranslationError) as info:
        translate(case["body"])
    if case["param"] is not None:
        assert info.value.param == case["param"]
    assert isinstance(info.value, ValueError)
    assert info.value.message


_ROLES = st.sampled_from(["system", "developer", "user", "assistant", "tool"])


@given(st.lists(_ROLES, min_size=1, max_size=12))
def test_roles_always_alternate(roles: list[str]) -> None:
    messages: list[dict[str, Any]] = []
    for i, role in enumerate(roles):
        if role == "tool":
            messages.append({"role": "tool", "tool_call_id": f"t{i}", "content": "ok"})
        else:
            messages.append({"role": role, "content": f"m{i}"})
    if all(role in ("system", "developer") for role in roles):
        with pytest.raises(TranslationError):
            translate({"messages": messages})
        return
    out = translate({"messages": messages})
    turn_roles = [turn["role"] for turn in out["messages"]]
    assert all(a != b for a, b in itertools.pairwise(turn_roles))
    blocks = sum(len(turn["content"]) for turn in out["messages"])
    assert blocks == sum(role not in ("system", "developer") for role in roles)


# ----------------------------------------------------------------------- responses


@pytest.mark.parametrize("name", ["response_text", "response_tool_use"])
def test_recorded_responses(name: str) -> None:
    out = from_anthropic_response(load(f"{name}.json"), "my-claude", CREATED)
    assert out == load(f"{name}.openai.json")


def test_response_usage_counts_both_cache_kinds() -> None:
    usage = from_anthropic_response(load("response_tool_use.json"), "m", CREATED)["usage"]
    assert usage["prompt_tokens"] == 12 + 2048 + 248
    assert usage["total_tokens"] == 12 + 2048 + 248 + 73
    assert usage["prompt_tokens_details"] == {"cached_tokens": 2048}


def test_tool_only_response_has_null_content() -> None:
    resp = {
        "id": "msg_1",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}],
        "stop_reason": "tool_use",
    }
    out = from_anthropic_response(resp, "m", CREATED)
    assert out["choices"][0]["message"]["content"] is None
    assert out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert "usage" not in out


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ],
)
def test_finish_reason_mapping(stop_reason: str, finish: str) -> None:
    resp = {"id": "msg_1", "content": [{"type": "text", "text": "x"}], "stop_reason": stop_reason}
    assert from_anthropic_response(resp, "m", CREATED)["choices"][0]["finish_reason"] == finish


def test_usage_from_anthropic() -> None:
    block = {
        "input_tokens": 10,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 5,
        "output_tokens": 7,
    }
    assert usage_from_anthropic(block) == Usage(115, 7, 100, cache_write_tokens=5)
    assert usage_from_anthropic({"output_tokens": 42}) == Usage(output_tokens=42)
    assert usage_from_anthropic({"input_tokens": 3}) == Usage(input_tokens=3)
    assert usage_from_anthropic(None) == Usage()
    assert usage_from_anthropic({"input_tokens": "3", "output_tokens": True}) == Usage()


# -------------------------------------------------------------------------- errors


@pytest.mark.parametrize("case", load("errors.json"), ids=lambda case: str(case["status"]))
def test_error_mapping(case: dict[str, Any]) -> None:
    assert error_to_openai(case["status"], case["body"]) == {"error": case["openai"]}
    assert is_context_window_error(case["status"], case["body"]) is case["context_window"]
    assert is_content_policy_error(case["status"], case["body"]) is case["content_policy"]


def test_error_body_as_bytes() -> None:
    body = json.dumps(load("errors.json")[0]["body"]).encode()
    assert is_context_window_error(400, body)
    assert error_to_openai(400, body)["error"]["code"] == "context_length_exceeded"


# -------------------------------------------------------------------------- stream

STREAMS = ["stream_text", "stream_tool_use", "stream_thinking_parallel_tools", "stream_overloaded"]


def test_translator_is_re_exported() -> None:
    assert AnthropicStreamTranslator is anthropic_stream.AnthropicStreamTranslator


@pytest.mark.parametrize("name", STREAMS)
def test_recorded_streams(name: str) -> None:
    _, chunks = run_stream(name)
    expected = [
        json.loads(line) for line in (DATA / f"{name}.openai.jsonl").read_text().splitlines()
    ]
    assert chunks == expected


def test_text_stream_state() -> None:
    translator, chunks = run_stream("stream_text")
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == [
        "Hello",
        "! How can I help you today?",
    ]
    assert (translator.finished, translator.finish_reason, translator.error) == (True, "stop", None)
    assert translator.usage == Usage(
        input_tokens=25, output_tokens=12, cached_input_tokens=0, cache_write_tokens=0
    )
    assert translator.text_so_far == "Hello! How can I help you today?"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == 37
    _, no_usage = run_stream("stream_text", include_usage=False)
    assert no_usage == chunks[:-1]


def test_tool_use_stream_state() -> None:
    translator, chunks = run_stream("stream_tool_use")
    call = chunks[3]["choices"][0]["delta"]["tool_calls"][0]
    assert call["id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert call["function"] == {"name": "get_weather", "arguments": ""}
    arguments = "".join(
        c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[4:-2]
    )
    assert json.loads(arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert translator.finish_reason == "tool_calls"
    assert translator.usage == Usage(input_tokens=472, output_tokens=89)
    assert (
        translator.text_so_far == "Okay, let's check the weather for San Francisco, CA:" + arguments
    )


def test_thinking_is_dropped_and_no_arg_tool_gets_empty_object() -> None:
    translator, chunks = run_stream("stream_thinking_parallel_tools")
    assert translator.text_so_far == '{"path": "/srv/app"}{}'
    assert translator.generated_so_far.startswith("The user wants the repo status")
    assert translator.generated_so_far.endswith(translator.text_so_far)
    indexes = [c["choices"][0]["delta"]["tool_calls"][0]["index"] for c in chunks[1:6]]
    assert indexes == [0, 0, 0, 1, 1]
    assert translator.usage == Usage(38 + 1204 + 18240, 131, 18240, cache_write_tokens=1204)


def test_usage_is_cumulative_latest_value_wins() -> None:
    translator = AnthropicStreamTranslator(MODEL, CREATED, include_usage=True)
    translator.feed(*load_sse("stream_thinking_parallel_tools.sse")[0])
    assert translator.usage == Usage(38 + 1204 + 18240, 3, 18240, cache_write_tokens=1204)
    for count in (40, 90):
        usage = {"output_tokens": count}
        translator.feed("message_delta", {"type": "message_delta", "delta": {}, "usage": usage})
    assert translator.usage == Usage(38 + 1204 + 18240, 90, 18240, cache_write_tokens=1204)
    assert not translator.finished


def test_error_event_mid_stream() -> None:
    translator, chunks = run_stream("stream_overloaded")
    assert len(chunks) == 3
    assert translator.error == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert (translator.finished, translator.finish_reason) == (False, None)
    assert translator.usage == Usage(
        input_tokens=1530, output_tokens=1, cached_input_tokens=0, cache_write_tokens=0
    )
    assert translator.text_so_far == "Here is the refactored function:\n\n```python\ndef"
    assert error_to_openai(200, translator.error)["error"]["type"] == "overloaded_error"


def test_event_name_used_when_data_has_no_type() -> None:
    translator = AnthropicStreamTranslator(MODEL, CREATED, include_usage=False)
    assert translator.feed("ping", {}) == []
    delta = {"index": 0, "delta": {"type": "text_delta", "text": "hi"}}
    assert translator.feed("content_block_delta", delta) == [delta_chunk({"content": "hi"})]
    assert translator.feed(None, {"type": "some_future_event"}) == []


def test_max_tokens_stop_maps_to_length() -> None:
    translator = AnthropicStreamTranslator(MODEL, CREATED, include_usage=False)
    data = {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {}}
    assert translator.feed("message_delta", data) == [delta_chunk({}, "length")]
    assert translator.finished
    assert translator.feed("message_stop", {"type": "message_stop"}) == []


@given(st.lists(st.text(max_size=20), max_size=15))
def test_any_split_of_text_round_trips(pieces: list[str]) -> None:
    translator = AnthropicStreamTranslator(MODEL, CREATED, include_usage=False)
    translator.feed("message_start", {"type": "message_start", "message": {"id": "msg_x"}})
    start = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert translator.feed("content_block_start", start) == []
    contents: list[str] = []
    for piece in pieces:
        delta = {"type": "text_delta", "text": piece}
        event = {"type": "content_block_delta", "index": 0, "delta": delta}
        for out in translator.feed("content_block_delta", event):
            contents.append(out["choices"][0]["delta"]["content"])
    assert "".join(contents) == "".join(pieces) == translator.text_so_far
    assert all(contents)


@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=10))
def test_output_tokens_take_latest_value(counts: list[int]) -> None:
    translator = AnthropicStreamTranslator(MODEL, CREATED, include_usage=True)
    for count in counts:
        usage = {"output_tokens": count}
        translator.feed(None, {"type": "message_delta", "delta": {}, "usage": usage})
    assert translator.usage.output_tokens == counts[-1]


def test_usage_is_final_only_with_the_stop_reason() -> None:
    translator = AnthropicStreamTranslator(MODEL, CREATED, include_usage=False)
    translator.feed(*load_sse("stream_text.sse")[0])  # message_start: output_tokens 1
    assert translator.usage.output_tokens == 1 and not translator.usage_final
    partial = {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 7}}
    translator.feed("message_delta", partial)
    assert not translator.usage_final and not translator.stopped
    final = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}}
    translator.feed("message_delta", final)
    assert translator.usage_final and not translator.stopped
    translator.feed("message_stop", {"type": "message_stop"})
    assert translator.stopped
