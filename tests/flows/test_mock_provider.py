"""The scripted fake provider, exercised over real HTTP with httpx."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tiktoken

from gateway.mock_provider import create_app, load_script_file
from gateway.mock_provider.stats import Stats
from gateway.mock_provider.tokens import WORDS, completion_text
from tests.support.servers import serve_app

OPENAI_AUTH = {"Authorization": "Bearer sk-provider-key"}
ANTHROPIC_AUTH = {"x-api-key": "sk-ant-provider", "anthropic-version": "2023-06-01"}
USER = [{"role": "user", "content": "What is the weather in Paris today?"}]

Record = dict[str, Any]


@pytest.fixture(scope="module")
def enc() -> tiktoken.Encoding:
    return tiktoken.get_encoding("o200k_base")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_app(create_app()) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers=OPENAI_AUTH, timeout=5) as http:
        assert http.post("/_mock/reset").json() == {"ok": True}
        yield http


def script(client: httpx.Client, model: str, *steps: dict[str, Any], **extra: Any) -> None:
    response = client.post("/_mock/script", json={"model": model, "steps": list(steps), **extra})
    assert response.status_code == 200, response.text


def chat(client: httpx.Client, model: str = "gpt-mock", **body: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": model, "messages": USER, **body})


def messages(client: httpx.Client, model: str = "claude-mock", **body: Any) -> httpx.Response:
    payload = {"model": model, "max_tokens": 100, "messages": USER, **body}
    return client.post("/v1/messages", json=payload, headers=ANTHROPIC_AUTH)


def data_events(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]


def chunks(text: str) -> list[dict[str, Any]]:
    return [json.loads(data) for data in data_events(text) if data != "[DONE]"]


def contents(events: list[dict[str, Any]]) -> list[str]:
    return [
        event["choices"][0]["delta"]["content"]
        for event in events
        if event["choices"] and event["choices"][0]["delta"].get("content")
    ]


def anthropic_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        name, data = block.split("\n")
        out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def records(client: httpx.Client) -> list[Record]:
    result: list[Record] = client.get("/_mock/stats").json()["requests"]
    return result


def wait_for_record(client: httpx.Client, check: Callable[[Record], bool]) -> Record:
    """Poll the stats until a record satisfies ``check`` (the server acts asynchronously)."""
    deadline = time.monotonic() + 5
    while True:
        found = [record for record in records(client) if check(record)]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, records(client)
        time.sleep(0.01)


def prompt_tokens(enc: tiktoken.Encoding, *texts: str) -> int:
    return sum(len(enc.encode(text)) + 3 for text in texts) + 3


def test_every_word_is_one_token(enc: tiktoken.Encoding) -> None:
    assert all(len(enc.encode(word)) == 1 for word in WORDS)
    assert len(enc.encode(completion_text(57))) == 57


def test_chat_json_counts_tokens_and_records_the_request(
    client: httpx.Client, enc: tiktoken.Encoding
) -> None:
    parts = [{"type": "text", "text": "Hello "}, {"type": "image_url"}, {"text": "there"}]
    body_messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": parts}]
    sent = {
        "x-request-id": "rid-1",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "x-stainless-retry-count": "2",
        "idempotency-key": "idem-1",
        "x-should-retry": "false",
    }
    response = client.post(
        "/v1/chat/completions",
        json={"model": "gpt-x", "messages": body_messages},
        headers=sent,
    )
    assert response.status_code == 200
    document = response.json()
    expected_prompt = prompt_tokens(enc, "Be brief.", "Hello there")
    assert document["object"] == "chat.completion"
    assert document["model"] == "gpt-x"
    choice = document["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert len(enc.encode(choice["message"]["content"])) == 20
    assert document["usage"] == document["usage"] | {
        "prompt_tokens": expected_prompt,
        "completion_tokens": 20,
        "total_tokens": expected_prompt + 20,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    }
    (record,) = records(client)
    assert record["authorization"] == "Bearer sk-provider-key"
    assert record["headers"] == sent
    assert record["body"]["messages"] == body_messages
    assert (record["outcome"], record["status"], record["stream"]) == ("ok", 200, False)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (expected_prompt, 20)
    assert record["started"] <= record["ended"]


def test_chat_stream_without_usage(client: httpx.Client) -> None:
    response = chat(client, stream=True)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert data_events(response.text)[-1] == "[DONE]"
    events = chunks(response.text)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert contents(events) == list(WORDS[:20])
    assert events[-1]["choices"][0] == events[-1]["choices"][0] | {
        "delta": {},
        "finish_reason": "stop",
    }
    assert all("usage" not in event for event in events)
    assert all(event["object"] == "chat.completion.chunk" for event in events)
    assert records(client)[0]["chunks_sent"] == 20


def test_chat_stream_with_usage_capped_by_max_completion_tokens(
    client: httpx.Client, enc: tiktoken.Encoding
) -> None:
    options = {"include_usage": True}
    response = chat(client, stream=True, stream_options=options, max_completion_tokens=5)
    events = chunks(response.text)
    assert contents(events) == list(WORDS[:5])
    assert events[-2]["choices"][0]["finish_reason"] == "length"
    usage_chunk = events[-1]
    assert usage_chunk["choices"] == []
    expected_prompt = prompt_tokens(enc, USER[0]["content"])
    assert usage_chunk["usage"]["prompt_tokens"] == expected_prompt
    assert usage_chunk["usage"]["completion_tokens"] == 5
    assert usage_chunk["usage"]["total_tokens"] == expected_prompt + 5
    assert all(event["usage"] is None for event in events[:-1])
    assert data_events(response.text)[-1] == "[DONE]"


def test_scripted_completion_length_and_max_tokens(client: httpx.Client) -> None:
    script(client, "gpt-mock", {"completion_tokens": 7}, {"completion_tokens": 7})
    first = chat(client).json()
    assert (first["usage"]["completion_tokens"], first["choices"][0]["finish_reason"]) == (
        7,
        "stop",
    )
    second = chat(client, max_tokens=3).json()
    assert second["usage"]["completion_tokens"] == 3
    assert second["choices"][0]["finish_reason"] == "length"
    assert second["choices"][0]["message"]["content"] == "".join(WORDS[:3])


def test_openai_endpoints_require_a_bearer_key(client: httpx.Client) -> None:
    for auth in ({"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Basic k"}):
        response = client.post(
            "/v1/chat/completions", json={"model": "m", "messages": USER}, headers=auth
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert {record["outcome"] for record in records(client)} == {"error"}
    assert client.post("/v1/chat/completions", content=b"{oops").status_code == 400


def test_rate_limit_headers_then_default(client: httpx.Client) -> None:
    script(
        client,
        "gpt-mock",
        {"status": 429, "headers": {"Retry-After": "1.2"}},
        {"status": 429, "headers": {"retry-after-ms": 300}},
        default={"completion_tokens": 2},
    )
    first = chat(client)
    assert (first.status_code, first.headers["retry-after"]) == (429, "1.2")
    assert first.json()["error"]["code"] == "rate_limit_exceeded"
    second = chat(client)
    assert (second.status_code, second.headers["retry-after-ms"]) == (429, "300")
    assert [chat(client).json()["usage"]["completion_tokens"] for _ in range(2)] == [2, 2]
    statuses = [(record["status"], record["prompt_tokens"]) for record in records(client)]
    assert statuses[:2] == [(429, 0), (429, 0)]


def test_error_bodies_of_both_providers(client: httpx.Client) -> None:
    policy = {
        "error": {
            "message": "rejected by the safety system",
            "type": "invalid_request_error",
            "param": None,
            "code": "content_policy_violation",
        }
    }
    script(
        client, "gpt-mock", {"status": 400, "context_window": True}, {"status": 400, "body": policy}
    )
    context = chat(client).json()["error"]
    assert (context["code"], context["param"]) == ("context_length_exceeded", "messages")
    assert context["message"].startswith("This model's maximum context length is")
    assert chat(client).json() == policy
    script(
        client,
        "claude-mock",
        {"status": 529},
        {"status": 400, "context_window": True},
        {"status": 500, "include_usage_on_error": True},
    )
    overloaded = messages(client)
    assert overloaded.status_code == 529
    assert overloaded.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    too_long = messages(client).json()["error"]
    assert too_long["type"] == "invalid_request_error"
    assert "prompt is too long" in too_long["message"]
    with_usage = messages(client).json()
    assert with_usage["error"]["type"] == "api_error"
    assert with_usage["usage"]["output_tokens"] == 0
    assert records(client)[-1]["prompt_tokens"] == with_usage["usage"]["input_tokens"] > 0


def test_reset_after_chunks_breaks_the_response(client: httpx.Client) -> None:
    script(client, "gpt-mock", {"reset_after_chunks": 2}, {"reset_after_chunks": 0})
    received: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", "/v1/chat/completions", json=_stream_body()) as response,
    ):
        received.extend(response.iter_lines())
    assert sum('"content":" ' in line for line in received) == 2
    assert "data: [DONE]" not in received
    with pytest.raises(httpx.RemoteProtocolError):
        chat(client)  # non-streaming: half a JSON body, then the connection drops
    cut, whole = records(client)
    assert (cut["outcome"], cut["chunks_sent"], cut["completion_tokens"]) == ("reset", 2, 2)
    assert cut["ended"] is not None
    # a plain answer was generated whole before it was cut: billed in full
    assert (whole["outcome"], whole["completion_tokens"]) == ("reset", 20)


def _stream_body(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-mock", "messages": USER, "stream": True, **extra}


def test_close_after_chunks_ends_cleanly_without_finish(client: httpx.Client) -> None:
    script(client, "gpt-mock", {"close_after_chunks": 3})
    response = client.post("/v1/chat/completions", json=_stream_body())
    events = chunks(response.text)
    assert contents(events) == list(WORDS[:3])
    assert all(event["choices"][0]["finish_reason"] is None for event in events)
    assert "[DONE]" not in data_events(response.text)
    (record,) = records(client)
    assert (record["outcome"], record["chunks_sent"], record["completion_tokens"]) == (
        "closed",
        3,
        3,
    )


def test_no_done_still_finishes_and_reports_usage(client: httpx.Client) -> None:
    script(client, "gpt-mock", {"no_done": True})
    body = _stream_body(stream_options={"include_usage": True})
    response = client.post("/v1/chat/completions", json=body)
    events = chunks(response.text)
    assert "[DONE]" not in data_events(response.text)
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["usage"]["completion_tokens"] == 20


def test_malformed_event_is_inserted_before_chunk(client: httpx.Client) -> None:
    script(client, "gpt-mock", {"malformed_at_chunk": 2})
    data = data_events(client.post("/v1/chat/completions", json=_stream_body()).text)
    assert data.count("{not json") == 1
    position = data.index("{not json")
    good = [json.loads(item) for item in data[:position]]
    assert contents(good) == list(WORDS[:2])
    assert len(contents(chunks("\n".join(f"data: {d}" for d in data if d != "{not json")))) == 20
    assert records(client)[0]["completion_tokens"] == 20


def test_hang_until_the_client_gives_up(client: httpx.Client) -> None:
    script(client, "gpt-mock", {"hang": True})
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/chat/completions", json=_stream_body(), timeout=0.2)
    record = wait_for_record(client, lambda record: record["outcome"] == "cancelled")
    assert record["ended"] is not None and record["ended"] - record["started"] < 2
    assert record["status"] is None
    assert (record["chunks_sent"], record["completion_tokens"]) == (0, 0)


def test_delay_is_cut_short_by_a_disconnect(client: httpx.Client) -> None:
    script(client, "gpt-mock", {"delay_s": 30})
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/chat/completions", json=_stream_body(stream=False), timeout=0.2)
    record = wait_for_record(client, lambda record: record["ended"] is not None)
    # the provider generates (and bills) a plain answer whose client went away
    assert (record["outcome"], record["completion_tokens"]) == ("abandoned", 20)
    assert record["ended"] - record["started"] < 2


def test_hang_after_chunks_truth_is_what_was_sent(client: httpx.Client) -> None:
    script(client, "gpt-mock", {"hang_after_chunks": 3})
    with client.stream("POST", "/v1/chat/completions", json=_stream_body()) as response:
        lines = response.iter_lines()
        received = []
        while len(received) < 3:
            line = next(lines)
            if '"content":" ' in line:
                received.append(line)
        record = wait_for_record(client, lambda record: record["outcome"] == "hang")
        assert record["ended"] is None
    record = wait_for_record(client, lambda record: record["outcome"] == "cancelled")
    assert record["chunks_sent"] == record["completion_tokens"] == 3
    assert record["status"] == 200
    totals = client.get("/_mock/stats").json()["by_model"]["gpt-mock"]
    assert totals["completion_tokens"] == 3
    assert totals["prompt_tokens"] == record["prompt_tokens"] > 0


def test_slow_drip_timing_and_disconnect(client: httpx.Client) -> None:
    script(client, "gpt-mock", {"delay_s": 0.2, "chunk_delay_s": 0.05, "completion_tokens": 3})
    started = time.monotonic()
    with client.stream("POST", "/v1/chat/completions", json=_stream_body()) as response:
        first_byte = time.monotonic() - started
        assert response.read()
    assert first_byte >= 0.2
    assert time.monotonic() - started >= 0.2 + 4 * 0.05
    script(client, "gpt-mock", {"chunk_delay_s": 0.1})
    with client.stream("POST", "/v1/chat/completions", json=_stream_body()) as response:
        for line in response.iter_lines():
            if '"content":" ' in line:
                break  # leave after the first word: the connection is dropped
    record = wait_for_record(client, lambda record: record["outcome"] == "cancelled")
    assert record["ended"] - record["started"] < 1.0  # 20 chunks would take 2 s
    assert 1 <= record["chunks_sent"] == record["completion_tokens"] < 20


def test_tool_call_on_openai(client: httpx.Client, enc: tiktoken.Encoding) -> None:
    tool = {"name": "get_weather", "arguments": {"city": "Paris"}}
    script(client, "gpt-mock", {"tool_call": tool}, {"tool_call": tool})
    arguments = json.dumps(tool["arguments"])
    expected = len(enc.encode(arguments)) + len(enc.encode("get_weather"))
    document = chat(client).json()
    choice = document["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": arguments}
    assert document["usage"]["completion_tokens"] == expected
    body = _stream_body(stream_options={"include_usage": True})
    events = chunks(client.post("/v1/chat/completions", json=body).text)
    deltas = [
        event["choices"][0]["delta"]["tool_calls"][0]
        for event in events
        if event["choices"] and "tool_calls" in event["choices"][0]["delta"]
    ]
    assert deltas[0]["id"].startswith("call_") and deltas[0]["type"] == "function"
    assert deltas[0]["function"] == {"name": "get_weather", "arguments": ""}
    fragments = [delta["function"]["arguments"] for delta in deltas[1:]]
    assert len(fragments) >= 2 and "".join(fragments) == arguments
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert (
        events[-1]["usage"]["completion_tokens"]
        == expected
        == records(client)[1]["completion_tokens"]
    )


def test_anthropic_requires_its_headers(client: httpx.Client) -> None:
    body = {"model": "claude-mock", "max_tokens": 5, "messages": USER}
    missing_key = client.post("/v1/messages", json=body, headers={"anthropic-version": "x"})
    assert missing_key.status_code == 401
    assert missing_key.json()["error"]["type"] == "authentication_error"
    assert missing_key.json()["type"] == "error"
    missing_version = client.post("/v1/messages", json=body, headers={"x-api-key": "k"})
    assert missing_version.status_code == 400
    assert missing_version.json()["error"]["type"] == "invalid_request_error"


def test_anthropic_json_message(client: httpx.Client, enc: tiktoken.Encoding) -> None:
    document = messages(client, system="You are terse.").json()
    assert (document["type"], document["role"], document["stop_reason"]) == (
        "message",
        "assistant",
        "end_turn",
    )
    assert document["content"] == [{"type": "text", "text": completion_text(20)}]
    expected = prompt_tokens(enc, "You are terse.", USER[0]["content"])
    assert document["usage"]["input_tokens"] == expected
    assert document["usage"]["output_tokens"] == 20
    (record,) = records(client)
    assert record["authorization"] == "sk-ant-provider"
    assert record["headers"]["anthropic-version"] == "2023-06-01"
    assert (record["prompt_tokens"], record["completion_tokens"]) == (expected, 20)


def test_anthropic_stream_sequence_and_cumulative_usage(
    client: httpx.Client, enc: tiktoken.Encoding
) -> None:
    script(client, "claude-mock", {"cached_tokens": 4, "completion_tokens": 6})
    system = [{"type": "text", "text": "You are terse."}]
    events = anthropic_events(messages(client, stream=True, system=system, max_tokens=5).text)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(name == data["type"] for name, data in events)
    usage = events[0][1]["message"]["usage"]
    expected = prompt_tokens(enc, "You are terse.", USER[0]["content"])
    assert usage["input_tokens"] + usage["cache_read_input_tokens"] == expected
    assert (usage["cache_read_input_tokens"], usage["output_tokens"]) == (4, 1)
    texts = [data["delta"]["text"] for name, data in events if name == "content_block_delta"]
    assert texts == list(WORDS[:5])
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "max_tokens"
    assert delta["usage"]["output_tokens"] == 5
    (record,) = records(client)
    assert (record["prompt_tokens"], record["cached_tokens"]) == (expected, 4)


def test_anthropic_tool_use(client: httpx.Client, enc: tiktoken.Encoding) -> None:
    tool = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
    script(client, "claude-mock", {"tool_call": tool}, {"tool_call": tool})
    arguments = json.dumps(tool["arguments"])
    expected = len(enc.encode(arguments)) + len(enc.encode("get_weather"))
    document = messages(client).json()
    assert document["stop_reason"] == "tool_use"
    (block,) = document["content"]
    assert (block["type"], block["name"], block["input"]) == (
        "tool_use",
        "get_weather",
        tool["arguments"],
    )
    assert document["usage"]["output_tokens"] == expected
    events = anthropic_events(messages(client, stream=True).text)
    starts = [data for name, data in events if name == "content_block_start"]
    assert starts[0]["content_block"]["type"] == "tool_use"
    assert starts[0]["content_block"]["name"] == "get_weather"
    fragments = [
        data["delta"]["partial_json"]
        for name, data in events
        if name == "content_block_delta" and data["delta"]["type"] == "input_json_delta"
    ]
    assert len(fragments) >= 2 and json.loads("".join(fragments)) == tool["arguments"]
    message_delta = next(data for name, data in events if name == "message_delta")
    assert message_delta["delta"]["stop_reason"] == "tool_use"
    assert message_delta["usage"]["output_tokens"] == expected


def test_usage_false_and_cached_tokens(client: httpx.Client) -> None:
    script(client, "gpt-mock", {"usage": False}, {"usage": False}, {"cached_tokens": 5})
    assert "usage" not in chat(client).json()
    body = _stream_body(stream_options={"include_usage": True})
    events = chunks(client.post("/v1/chat/completions", json=body).text)
    assert all("usage" not in event for event in events)
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    cached = chat(client).json()["usage"]
    assert cached["prompt_tokens_details"]["cached_tokens"] == 5
    assert cached["prompt_tokens"] > 5


def test_embeddings(client: httpx.Client, enc: tiktoken.Encoding) -> None:
    inputs = ["hello world", "the quick brown fox"]
    document = client.post("/v1/embeddings", json={"model": "emb", "input": inputs}).json()
    assert document["object"] == "list" and document["model"] == "emb"
    assert [item["index"] for item in document["data"]] == [0, 1]
    assert all(len(item["embedding"]) == 8 for item in document["data"])
    total = sum(len(enc.encode(text)) for text in inputs)
    assert document["usage"] == {"prompt_tokens": total, "total_tokens": total}
    encoded = client.post(
        "/v1/embeddings", json={"model": "emb", "input": "hello world", "encoding_format": "base64"}
    ).json()
    vector = struct.unpack("<8f", base64.b64decode(encoded["data"][0]["embedding"]))
    assert list(vector) == document["data"][0]["embedding"]
    assert records(client)[0]["prompt_tokens"] == total


def test_models_list(client: httpx.Client) -> None:
    script(client, "my-model")
    document = client.get("/v1/models").json()
    assert document["object"] == "list"
    assert "my-model" in {model["id"] for model in document["data"]}


def test_scripts_pop_in_order_and_reset_clears(client: httpx.Client) -> None:
    script(client, "*", default={"status": 503})
    script(client, "gpt-mock", {"status": 500}, {"completion_tokens": 1})
    assert [chat(client).status_code for _ in range(3)] == [500, 200, 200]
    assert chat(client, model="other").status_code == 503
    assert chat(client, model="other").status_code == 503
    stats = client.get("/_mock/stats").json()
    assert stats["by_model"]["gpt-mock"]["requests"] == 3
    assert stats["by_model"]["gpt-mock"]["completion_tokens"] == 1 + 20
    assert len(client.get("/_mock/stats", params={"model": "other"}).json()["requests"]) == 2
    since = stats["requests"][2]["id"]
    assert len(client.get("/_mock/stats", params={"since": since}).json()["requests"]) == 2
    client.post("/_mock/reset")
    empty = {"requests": [], "by_model": {}, "max_concurrency": 0, "rate_limited": 0}
    assert client.get("/_mock/stats").json() == empty
    assert chat(client, model="other").status_code == 200
    bad = client.post("/_mock/script", json={"model": "m", "steps": [{"stauts": 500}]})
    assert bad.status_code == 400 and "stauts" in bad.text


def test_stats_keep_a_bounded_number_of_records() -> None:
    stats = Stats(max_records=3)
    for index in range(5):
        record = stats.start("/v1/chat/completions", {})
        stats.identify(record, {"model": "m"})
        record.completion_tokens = index
        stats.finish(record, "ok")
    snapshot = stats.snapshot()
    assert [record["id"] for record in snapshot["requests"]] == [3, 4, 5]
    assert snapshot["by_model"]["m"] == {"requests": 5, "prompt_tokens": 0, "completion_tokens": 10}


def test_script_files_in_json_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "gpt-mock:\n  steps:\n    - status: 429\n  default:\n    completion_tokens: 2\n"
    )
    (tmp_path / "s.json").write_text(json.dumps({"gpt-mock": [{"status": 500}]}))
    from_yaml = load_script_file(tmp_path / "s.yaml")
    assert from_yaml["gpt-mock"]["default"] == {"completion_tokens": 2}
    assert load_script_file(tmp_path / "s.json") == {"gpt-mock": [{"status": 500}]}
    with (
        serve_app(create_app(from_yaml)) as url,
        httpx.Client(base_url=url, headers=OPENAI_AUTH) as http,
    ):
        assert chat(http).status_code == 429
        assert chat(http).json()["usage"]["completion_tokens"] == 2


def test_a_rate_limit_announces_itself_and_refuses_beyond_it(client: httpx.Client) -> None:
    assert client.post("/_mock/ratelimit", json={"requests": 2, "window_s": 30}).json()["ok"]
    first, second, third = (chat(client) for _ in range(3))
    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 429]
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert second.headers["x-ratelimit-reset-requests"].endswith("s")
    assert third.headers["retry-after"] == "30" and third.json()["error"]["type"]
    assert client.get("/_mock/stats").json()["rate_limited"] == 1
    client.post("/_mock/reset")  # the limit goes with the reset
    assert chat(client).status_code == 200
