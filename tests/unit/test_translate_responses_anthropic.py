"""Golden tests of the responses -> anthropic pair: a Responses request in, the exact
Anthropic Messages body out; an Anthropic message, event sequence or error in, the exact
Responses object, events or error out; the effort -> thinking table and its edges."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway import sse
from gateway.translate.common import TranslationError
from gateway.translate.reasoning import thinking_budget
from gateway.translate.responses_anthropic import (
    error_body,
    from_anthropic_response,
    to_anthropic_request,
)
from gateway.translate.responses_anthropic_stream import AnthropicToResponsesStream

DATA = Path(__file__).parent / "data" / "anthropic"
MODEL = "claude-sonnet-4-5"

AGENT_TURN: dict[str, Any] = {
    "model": "gpt-4o",
    "instructions": "You are terse.",
    "input": [
        {"role": "developer", "content": "Answer in French."},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Weather in Paris?"},
                {"type": "input_image", "image_url": "https://example.com/p.png", "detail": "low"},
            ],
        },
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"c":"P"}'},
        {"type": "function_call", "call_id": "c2", "name": "time", "arguments": ""},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {
            "type": "function_call_output",
            "call_id": "c2",
            "output": [{"type": "input_text", "text": "noon"}],
        },
    ],
    "tools": [
        {
            "type": "function",
            "name": "weather",
            "description": "The weather",
            "parameters": {"type": "object"},
            "strict": True,
        },
        {"type": "function", "name": "time"},
    ],
    "tool_choice": {"type": "function", "name": "weather"},
    "parallel_tool_calls": False,
    "max_output_tokens": 3000,
    "temperature": 1.5,
    "top_p": 0.9,
    "user": "u-7",
    "reasoning": {"effort": "high"},
    "include": ["reasoning.encrypted_content"],
    "store": False,
    "truncation": "auto",
    "stream": True,
}

AGENT_TURN_AS_MESSAGES = {
    "model": MODEL,
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Paris?"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/p.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "c1", "name": "weather", "input": {"c": "P"}},
                {"type": "tool_use", "id": "c2", "name": "time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "c1", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "c2",
                    "content": [{"type": "text", "text": "noon"}],
                },
            ],
        },
    ],
    "max_tokens": 3000,
    "system": [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "Answer in French."},
    ],
    "temperature": 1,
    "top_p": 0.9,
    "tools": [
        {"name": "weather", "input_schema": {"type": "object"}, "description": "The weather"},
        {"name": "time", "input_schema": {"type": "object", "properties": {}}},
    ],
    # A forced tool and a tool loop whose thinking cannot be replayed: no thinking.
    "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
    "stream": True,
    "metadata": {"user_id": "u-7"},
}


def translate(body: dict[str, Any], default_max: int = 4096) -> dict[str, Any]:
    return to_anthropic_request(body, MODEL, default_max)


def test_an_agent_turn_becomes_the_same_messages_request() -> None:
    snapshot = copy.deepcopy(AGENT_TURN)
    assert translate(AGENT_TURN) == AGENT_TURN_AS_MESSAGES
    assert snapshot == AGENT_TURN  # the input is never mutated


def test_reasoning_effort_becomes_thinking_and_drops_sampling() -> None:
    body = {
        "model": "claude",
        "input": "Prove it.",
        "reasoning": {"effort": "medium", "summary": "auto"},
        "temperature": 0.2,
        "top_p": 0.5,
        "max_output_tokens": 8000,
    }
    assert translate(body) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Prove it."}]}],
        "max_tokens": 8000,
        "thinking": {"type": "enabled", "budget_tokens": 4096},
    }


def test_without_an_output_limit_the_callers_limit_is_used() -> None:
    out = translate({"model": "m", "input": "hi", "reasoning": {"effort": "low"}}, 2048)
    assert out["max_tokens"] == 2048 and out["thinking"]["budget_tokens"] == 1024


@pytest.mark.parametrize(
    ("effort", "max_tokens", "budget"),
    [
        ("none", 8000, None),
        ("minimal", 8000, None),
        ("low", 8000, 1024),
        ("medium", 8000, 4096),
        ("high", 20000, 16384),
        ("xhigh", 40000, 32768),
        ("high", 5000, 4999),  # clamped below max_tokens
        ("medium", 1025, 1024),  # the least room that still fits the minimum
        ("low", 1024, None),  # no room for Anthropic's minimum of 1024
        ("high", 600, None),
        (None, 8000, None),
    ],
)
def test_the_effort_to_budget_table(
    effort: str | None, max_tokens: int, budget: int | None
) -> None:
    assert thinking_budget(effort, max_tokens, "reasoning.effort") == budget
    body: dict[str, Any] = {"model": "m", "input": "hi", "max_output_tokens": max_tokens}
    body["reasoning"] = {"effort": effort}
    thinking = translate(body).get("thinking")
    assert thinking == (None if budget is None else {"type": "enabled", "budget_tokens": budget})


def test_an_unknown_effort_is_refused() -> None:
    with pytest.raises(TranslationError) as caught:
        translate({"model": "m", "input": "hi", "reasoning": {"effort": "extreme"}})
    assert caught.value.param == "reasoning.effort"


TOOL = {"type": "function", "name": "f", "parameters": {"type": "object"}}


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [TOOL], "tool_choice": "required"},
        {"tools": [TOOL], "tool_choice": {"type": "function", "name": "f"}},
        {"text": {"format": {"type": "json_object"}}},
        {  # a tool call being answered: its thinking would have to be sent back
            "input": [
                {"role": "user", "content": "go"},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": "done"},
            ]
        },
        {"input": [{"role": "user", "content": "go"}, {"role": "assistant", "content": "Su"}]},
    ],
    ids=["required", "named", "json", "tool-loop", "prefill"],
)
def test_thinking_is_left_out_where_anthropic_refuses_it(extra: dict[str, Any]) -> None:
    body = {"model": "m", "input": "hi", "reasoning": {"effort": "low"}, "temperature": 0.5}
    out = translate({**body, **extra})
    assert "thinking" not in out and out["temperature"] == 0.5


def test_a_finished_tool_loop_does_not_stop_thinking() -> None:
    body = {
        "model": "m",
        "reasoning": {"effort": "low"},
        "tools": [TOOL],
        "input": [
            {"role": "user", "content": "go"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "done"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Done."}]},
            {"role": "user", "content": "again"},
        ],
    }
    assert translate(body)["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_structured_output_is_a_forced_tool() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    fmt = {"type": "json_schema", "name": "place", "schema": schema, "strict": True}
    out = translate({"model": "m", "input": "Where?", "text": {"format": fmt}})
    assert out["tools"] == [
        {
            "name": "place",
            "description": "Give your whole answer as this tool's input, "
            "which must follow its schema exactly.",
            "input_schema": schema,
        }
    ]
    assert out["tool_choice"] == {"type": "tool", "name": "place"}


def test_files_and_data_images_become_blocks() -> None:
    pdf = "data:application/pdf;base64,JVBERi0x"
    png = "data:image/png;base64,iVBORw0K"
    content = [
        {"type": "input_file", "file_data": pdf, "filename": "a.pdf"},
        {"type": "input_image", "image_url": png},
        {"type": "input_text", "text": ""},  # empty text: dropped
    ]
    out = translate({"model": "m", "input": [{"role": "user", "content": content}]})
    assert out["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
            "title": "a.pdf",
        },
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
        },
    ]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"store": True}, "store"),
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}, None),
        ({"input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id"),
        ({"tools": [TOOL], "text": {"format": {"type": "json_object"}}}, "text.format"),
        ({"tool_choice": {"type": "allowed_tools"}, "tools": [TOOL]}, "tool_choice"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
    ],
)
def test_what_cannot_be_translated_is_refused(extra: dict[str, Any], param: str | None) -> None:
    with pytest.raises(TranslationError) as caught:
        translate({"model": "m", "input": "hi", **extra})
    if param is not None:
        assert caught.value.param == param
    else:
        assert caught.value.param == "input[0].content[0].image_url"


# ----------------------------------------------------------------- the answer

ANSWER: dict[str, Any] = {
    "id": "msg_01XY",
    "type": "message",
    "role": "assistant",
    "model": MODEL,
    "content": [
        {"type": "thinking", "thinking": "Paris: look it up.", "signature": "EqQB"},
        {"type": "redacted_thinking", "data": "EmwK"},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 5,
        "output_tokens": 40,
    },
}


def shell(**fields: Any) -> dict[str, Any]:
    return {
        "id": "resp_01XY",
        "object": "response",
        "created_at": 7,
        "status": "completed",
        "model": "claude-sonnet",
        "output": [],
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "parallel_tool_calls": True,
        "temperature": None,
        "top_p": None,
        "tool_choice": "auto",
        "tools": [],
        "max_output_tokens": None,
        "text": {"format": {"type": "text"}},
        "usage": None,
        **fields,
    }


def test_an_anthropic_message_becomes_the_exact_response() -> None:
    response = from_anthropic_response(ANSWER, {"model": "claude-sonnet", "input": "x"}, 7)
    assert response == shell(
        output=[
            {
                "type": "reasoning",
                "id": "rs_01XY_0",
                "summary": [{"type": "summary_text", "text": "Paris: look it up."}],
            },
            {
                "type": "message",
                "id": "msg_01XY_2",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Let me check.", "annotations": []}],
            },
            {
                "type": "function_call",
                "id": "fc_01XY_3",
                "call_id": "toolu_1",
                "name": "weather",
                "arguments": '{"city":"Paris"}',
                "status": "completed",
            },
        ],
        usage={
            "input_tokens": 115,  # the whole prompt: fresh, cache reads and writes
            "input_tokens_details": {"cached_tokens": 100},
            "output_tokens": 40,  # thinking included, as Anthropic bills it
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 155,
        },
    )


@pytest.mark.parametrize(
    ("stop_reason", "reason"),
    [("max_tokens", "max_output_tokens"), ("refusal", "content_filter")],
)
def test_a_cut_answer_is_incomplete(stop_reason: str, reason: str) -> None:
    message = {
        "id": "msg_1",
        "content": [{"type": "text", "text": "x"}],
        "stop_reason": stop_reason,
    }
    response = from_anthropic_response(message, {"model": "m"}, 0)
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": reason}


def test_a_structured_answer_is_the_message_text() -> None:
    body = {"model": "m", "text": {"format": {"type": "json_object"}}}
    forced = {"type": "tool_use", "id": "t", "name": "json_response", "input": {"a": "é"}}
    message = {"id": "msg_1", "content": [forced], "stop_reason": "tool_use"}
    response = from_anthropic_response(message, body, 0)
    [item] = response["output"]
    assert item["type"] == "message" and item["content"][0]["text"] == '{"a":"é"}'
    assert response["status"] == "completed"


# ----------------------------------------------------------------- stream


def feed(tr: AnthropicToResponsesStream, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    frames = [frame for event in events for frame in tr.feed(event)] + [tr.terminal()]
    out = []
    for event in sse.Decoder().feed(b"".join(frames)):
        data = orjson.loads(event.data)
        assert event.event == data.pop("type")
        out.append({"type": event.event, **data})
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    for found in out:
        del found["sequence_number"]
    return out


def start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, **fields: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": fields}


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


MESSAGE_START = {
    "type": "message_start",
    "message": {"id": "msg_01XY", "content": [], "usage": {"input_tokens": 12, "output_tokens": 1}},
}
BODY = {"model": "claude-sonnet", "input": "x"}
R = "rs_01XY_0"
M = "msg_01XY_1"
F = "fc_01XY_2"


def test_an_anthropic_stream_becomes_the_exact_typed_event_sequence() -> None:
    tr = AnthropicToResponsesStream(BODY, created=7)
    events = [
        MESSAGE_START,
        start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, type="thinking_delta", thinking="Hm"),
        delta(0, type="signature_delta", signature="EqQB"),
        stop(0),
        {"type": "ping"},
        start(1, {"type": "text", "text": ""}),
        delta(1, type="text_delta", text="Hi"),
        stop(1),
        start(2, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}),
        delta(2, type="input_json_delta", partial_json='{"a":'),
        delta(2, type="input_json_delta", partial_json="1}"),
        stop(2),
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 30},
        },
        {"type": "message_stop"},
    ]
    thinking = {"type": "reasoning", "id": R, "summary": [{"type": "summary_text", "text": "Hm"}]}
    text_part = {"type": "output_text", "text": "Hi", "annotations": []}
    text: dict[str, Any] = {"type": "message", "id": M, "status": "completed", "role": "assistant"}
    text["content"] = [text_part]
    call = {"type": "function_call", "id": F, "call_id": "toolu_1", "name": "f"}
    done_call = {**call, "arguments": '{"a":1}', "status": "completed"}
    usage = {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 42,
    }
    at = {"output_index": 0, "item_id": R, "summary_index": 0}
    mat = {"output_index": 1, "item_id": M, "content_index": 0}
    fat = {"output_index": 2, "item_id": F}
    assert feed(tr, events) == [
        {"type": "response.created", "response": shell(status="in_progress")},
        {"type": "response.in_progress", "response": shell(status="in_progress")},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "reasoning", "id": R, "summary": []},
        },
        {
            "type": "response.reasoning_summary_part.added",
            **at,
            "part": {"type": "summary_text", "text": ""},
        },
        {"type": "response.reasoning_summary_text.delta", **at, "delta": "Hm"},
        {"type": "response.reasoning_summary_text.done", **at, "text": "Hm"},
        {"type": "response.reasoning_summary_part.done", **at, "part": thinking["summary"][0]},
        {"type": "response.output_item.done", "output_index": 0, "item": thinking},
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {**text, "status": "in_progress", "content": []},
        },
        {
            "type": "response.content_part.added",
            **mat,
            "part": {"type": "output_text", "text": "", "annotations": []},
        },
        {"type": "response.output_text.delta", **mat, "delta": "Hi", "logprobs": []},
        {"type": "response.output_text.done", **mat, "text": "Hi", "logprobs": []},
        {"type": "response.content_part.done", **mat, "part": text_part},
        {"type": "response.output_item.done", "output_index": 1, "item": text},
        {
            "type": "response.output_item.added",
            "output_index": 2,
            "item": {**call, "arguments": "", "status": "in_progress"},
        },
        {"type": "response.function_call_arguments.delta", **fat, "delta": '{"a":'},
        {"type": "response.function_call_arguments.delta", **fat, "delta": "1}"},
        {"type": "response.function_call_arguments.done", **fat, "arguments": '{"a":1}'},
        {"type": "response.output_item.done", "output_index": 2, "item": done_call},
        {
            "type": "response.completed",
            "response": shell(output=[thinking, text, done_call], usage=usage),
        },
    ]


def recorded(name: str) -> list[dict[str, Any]]:
    return [orjson.loads(e.data) for e in sse.Decoder().feed((DATA / name).read_bytes())]


def test_a_recorded_thinking_stream_with_parallel_tools() -> None:
    events = feed(
        AnthropicToResponsesStream(BODY, 7), recorded("stream_thinking_parallel_tools.sse")
    )
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    kinds = [item["type"] for item in final["output"]]
    assert kinds == ["reasoning", "function_call", "function_call"]
    summary = final["output"][0]["summary"][0]["text"]
    assert summary.endswith("so I can call them in parallel.")
    assert final["output"][1]["arguments"] == '{"path": "/srv/app"}'
    # a tool without arguments gets "{}", as a delta too (clients join the deltas)
    empty = [e for e in events if e.get("item_id") == final["output"][2]["id"]]
    assert [e["type"] for e in empty] == [
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
    ]
    assert empty[0]["delta"] == empty[1]["arguments"] == "{}"
    assert final["usage"] == {
        "input_tokens": 38 + 18240 + 1204,
        "input_tokens_details": {"cached_tokens": 18240},
        "output_tokens": 131,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 38 + 18240 + 1204 + 131,
    }


def test_a_max_tokens_stream_ends_incomplete_and_closes_what_is_open() -> None:
    events = [
        MESSAGE_START,
        start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text="Hel"),
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens"},
            "usage": {"output_tokens": 5},
        },
    ]
    out = feed(AnthropicToResponsesStream(BODY, 7), events)
    assert [e["type"] for e in out[-5:]] == [
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    final = out[-1]["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["content"][0]["text"] == "Hel"
    assert final["usage"]["output_tokens"] == 5


def test_a_structured_stream_is_the_message_text() -> None:
    body = {"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}
    events = [
        MESSAGE_START,
        start(0, {"type": "tool_use", "id": "t", "name": "json_response", "input": {}}),
        delta(0, type="input_json_delta", partial_json='{"a":1}'),
        stop(0),
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}},
    ]
    out = feed(AnthropicToResponsesStream(body, 7), events)
    deltas = [e["delta"] for e in out if e["type"] == "response.output_text.delta"]
    final = out[-1]["response"]
    assert deltas == ['{"a":1}'] and final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == '{"a":1}'


def test_an_error_event_becomes_a_responses_error_event() -> None:
    tr = AnthropicToResponsesStream(BODY, 7)
    tr.feed(MESSAGE_START)
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    [frame] = tr.feed(error)
    [event] = sse.Decoder().feed(frame)
    assert event.event == "error"
    assert orjson.loads(event.data) == {
        "type": "error",
        "sequence_number": 2,
        "code": "overloaded_error",
        "message": "Overloaded",
        "param": None,
        "error": {
            "message": "Overloaded",
            "type": "overloaded_error",
            "param": None,
            "code": None,
        },
    }


# ----------------------------------------------------------------- errors


def test_an_anthropic_error_becomes_the_openai_error_a_responses_client_reads() -> None:
    body = b'{"type":"error","error":{"type":"invalid_request_error","message":"bad tool"}}'
    assert orjson.loads(error_body(400, body)) == {
        "error": {
            "message": "bad tool",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    long = {"type": "error", "error": {"message": "prompt is too long: 210000 tokens"}}
    assert orjson.loads(error_body(400, long))["error"]["code"] == "context_length_exceeded"
