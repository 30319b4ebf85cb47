from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from accounting.tokens import (
    IMAGE_PART_TOKENS,
    count_completion_text,
    count_text,
    encoding_name_for,
    estimate_chat_prompt,
    estimate_embedding_input,
    warm,
)

MODEL = "gpt-4o-mini"


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4o-2024-08-06",
        "chatgpt-4o-latest",
        "gpt-4.1",
        "gpt-4.1-nano",
        "gpt-5",
        "gpt-5-mini",
        "o1",
        "o1-mini",
        "o3",
        "o4-mini",
        "claude-sonnet-4-5",
        "claude-3-5-haiku-latest",
        "some-unknown-model",
        "GPT-4O",
        "openai/gpt-4o",
        "ft:gpt-4o-mini:acme::abc123",
    ],
)
def test_o200k_models(model: str) -> None:
    assert encoding_name_for(model) == "o200k_base"


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4",
        "gpt-4-turbo",
        "gpt-4-0613",
        "gpt-3.5-turbo",
        "gpt-35-turbo",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
        "ft:gpt-3.5-turbo:acme::x",
    ],
)
def test_cl100k_models(model: str) -> None:
    assert encoding_name_for(model) == "cl100k_base"


def test_count_text_matches_tiktoken() -> None:
    text = "Hello, world! Tokenize me, please."
    assert count_text(text, "gpt-4o") == len(tiktoken.get_encoding("o200k_base").encode(text))
    assert count_text(text, "gpt-4") == len(tiktoken.get_encoding("cl100k_base").encode(text))
    assert count_text("", MODEL) == 0


def test_special_tokens_in_text_do_not_raise() -> None:
    text = "before <|endoftext|> <|fim_prefix|> after"
    assert count_text(text, MODEL) > 5
    assert count_text(text, "gpt-4") > 5
    assert count_completion_text(text, MODEL) == count_text(text, MODEL)


def plain_formula(messages: list[dict[str, Any]], model: str) -> int:
    return sum(count_text(m["content"], model) + 3 for m in messages) + 3


@pytest.mark.parametrize("model", [MODEL, "gpt-3.5-turbo", "claude-haiku-4-5"])
def test_plain_messages_formula(model: str) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2? Answer with one digit."},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": ""},
    ]
    assert estimate_chat_prompt({"model": model, "messages": messages}, model) == plain_formula(
        messages, model
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=8))
def test_plain_messages_formula_property(contents: list[str]) -> None:
    messages = [{"role": "user", "content": c} for c in contents]
    assert estimate_chat_prompt({"messages": messages}, MODEL) == plain_formula(messages, MODEL)


def test_empty_body() -> None:
    assert estimate_chat_prompt({}, MODEL) == 3
    assert estimate_chat_prompt({"messages": []}, MODEL) == 3


def test_content_parts_and_images() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe this"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                    {"type": "text", "text": "and this"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                ],
            }
        ]
    }
    expected = 3 + count_text("Describe this", MODEL) + count_text("and this", MODEL)
    expected += 2 * IMAGE_PART_TOKENS + 3
    assert IMAGE_PART_TOKENS == 765
    assert estimate_chat_prompt(body, MODEL) == expected


def test_name_tool_calls_and_tool_messages() -> None:
    args = json.dumps({"city": "Paris", "unit": "c"})
    body = {
        "messages": [
            {"role": "user", "name": "alice", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": args},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        ]
    }
    expected = (
        3 + count_text("Weather?", MODEL) + count_text("alice", MODEL) + 1
        + 3 + count_text("get_weather", MODEL) + count_text(args, MODEL)
        + 3 + count_text('{"temp": 21}', MODEL)
        + 3
    )  # fmt: skip
    assert estimate_chat_prompt(body, MODEL) == expected


def test_tools_definitions_add_their_json() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    messages = [{"role": "user", "content": "hi"}]
    without = estimate_chat_prompt({"messages": messages}, MODEL)
    with_tools = estimate_chat_prompt({"messages": messages, "tools": tools}, MODEL)
    tools_json = json.dumps(tools, separators=(",", ":"), ensure_ascii=False)
    assert with_tools == without + count_text(tools_json, MODEL)
    assert estimate_chat_prompt({"messages": messages, "tools": []}, MODEL) == without


def test_malformed_body_does_not_raise() -> None:
    body: dict[str, Any] = {
        "messages": [
            "not a dict",
            {"role": "user", "content": 42},
            {"role": "user", "content": [None, 3, {"type": "text", "text": None}]},
            {"role": "assistant", "tool_calls": "nope"},
            {"role": "assistant", "tool_calls": [None, {"function": "x"}]},
        ],
        "tools": [{"bad": {1, 2}}],  # not JSON-serialisable
    }
    assert estimate_chat_prompt(body, MODEL) == 4 * 3 + 3
    assert estimate_chat_prompt({"messages": "nope"}, MODEL) == 3


def test_embedding_inputs() -> None:
    model = "text-embedding-3-small"
    assert estimate_embedding_input({"input": "hello world"}, model) == count_text(
        "hello world", model
    )
    assert estimate_embedding_input({"input": ["a b", "c <|endoftext|>"]}, model) == count_text(
        "a b", model
    ) + count_text("c <|endoftext|>", model)
    assert estimate_embedding_input({"input": [1, 2, 3, 4]}, model) == 4
    assert estimate_embedding_input({"input": [[1, 2], [3], []]}, model) == 3
    assert estimate_embedding_input({"input": None}, model) == 0
    assert estimate_embedding_input({}, model) == 0
    assert estimate_embedding_input({"input": [True, {"x": 1}]}, model) == 0


def test_warm_and_concurrent_use() -> None:
    warm(["gpt-4o", "gpt-4", "claude-opus-4-1"])
    results: list[int] = []

    def work() -> None:
        results.append(count_text("the quick brown fox", "gpt-4.1"))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    assert len(results) == 8


def test_the_encodings_ship_with_the_package() -> None:
    from accounting.tokens import BUNDLED_ENCODINGS

    names = {p.name for p in BUNDLED_ENCODINGS.iterdir()}
    assert {
        "fb374d419588a4632f3f557e76b4b70aebbca790",
        "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
    } <= names
