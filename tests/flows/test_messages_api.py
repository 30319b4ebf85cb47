"""The Anthropic Messages API through the gateway, with the official Anthropic SDK as the
client: native on a Claude model, translated on an OpenAI-kind one."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from tests.support.gateway import KEY_RESEARCH, PROVIDER_KEY, Gateway, run_gateway
from tests.support.ledger import flat_priced, records, settled, spent, truth_usd

MESSAGES: Any = [{"role": "user", "content": "Say hello"}]
UPSTREAM = {"claude-sonnet": "claude-sonnet-4-5", "gpt-4o-mini": "gpt-4o-mini"}
BOTH = pytest.mark.parametrize("model", ["claude-sonnet", "gpt-4o-mini"])
TOOL: Any = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
def gw(config: dict[str, Any], mock: str) -> Any:
    with run_gateway(flat_priced(config), mock) as gateway:
        yield gateway


def sdk(gw: Gateway, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gw.url, api_key=KEY_RESEARCH, max_retries=0, default_headers=headers
    )


@BOTH
def test_create(gw: Gateway, model: str) -> None:
    raw = sdk(gw).messages.with_raw_response.create(
        model=model, max_tokens=100, system="Be brief", messages=MESSAGES
    )
    message = raw.parse()
    assert message.type == "message" and message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and len(message.content[0].text.split()) == 20
    assert message.usage.output_tokens == 20
    [record] = records(gw.mock_url, UPSTREAM[model])
    assert message.usage.input_tokens == record["prompt_tokens"]
    assert raw.headers["x-spendgate-model"] == model
    assert float(raw.headers["x-spendgate-cost-usd"]) > 0


def test_native_passes_the_body_and_the_anthropic_headers(gw: Gateway) -> None:
    client = sdk(gw)
    client.messages.create(
        model="claude-sonnet",
        max_tokens=100,
        messages=MESSAGES,
        extra_headers={
            "anthropic-beta": "prompt-caching-2024-07-31",
            "anthropic-version": "2099-01-01",
        },
        extra_body={"top_k": 5},
    )
    [record] = records(gw.mock_url)
    assert record["path"] == "/v1/messages" and record["body"]["top_k"] == 5
    assert record["headers"]["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert record["headers"]["anthropic-version"] == "2099-01-01"  # the client's, not ours
    assert record["authorization"] == PROVIDER_KEY and KEY_RESEARCH not in str(record)


def test_translated_request_reaches_chat_completions(gw: Gateway) -> None:
    sdk(gw).messages.create(
        model="gpt-4o-mini", max_tokens=50, system="Be brief", messages=MESSAGES, tools=[TOOL]
    )
    [record] = records(gw.mock_url)
    assert record["path"] == "/v1/chat/completions"
    assert record["body"]["messages"][0] == {"role": "system", "content": "Be brief"}
    assert record["body"]["tools"][0]["function"]["name"] == "get_weather"
    assert "anthropic-version" not in record["headers"]


@BOTH
def test_stream_with_a_tool(gw: Gateway, model: str) -> None:
    gw.script(
        UPSTREAM[model], [{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    )
    with sdk(gw).messages.stream(
        model=model, max_tokens=100, messages=MESSAGES, tools=[TOOL]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    [block] = final.content
    assert block.type == "tool_use" and block.name == "get_weather"
    assert block.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"
    [record] = records(gw.mock_url)
    assert final.usage.output_tokens == record["completion_tokens"]


@BOTH
def test_stream_of_text(gw: Gateway, model: str) -> None:
    with sdk(gw).messages.stream(model=model, max_tokens=100, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert len(text.split()) == 20 and final.usage.output_tokens == 20


@BOTH
def test_count_tokens(gw: Gateway, model: str) -> None:
    client = sdk(gw)
    counted = client.messages.count_tokens(model=model, system="Be brief", messages=MESSAGES)
    assert records(gw.mock_url) == []  # counting is not a billed request
    client.messages.create(model=model, max_tokens=10, system="Be brief", messages=MESSAGES)
    [record] = records(gw.mock_url)
    # Anthropic's own count, or (translated) the gateway's tokenizer: the prompt's truth.
    assert counted.input_tokens == record["prompt_tokens"] > 0


def test_bearer_key_works_as_well(gw: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gw.url, auth_token=KEY_RESEARCH, max_retries=0)
    message = client.messages.create(model="claude-sonnet", max_tokens=10, messages=MESSAGES)
    assert message.content


def test_budget_refusal_is_anthropic_shaped(gw: Gateway) -> None:
    client = sdk(gw, **{"x-workflow-id": "wf-poor", "x-workflow-budget-usd": "0.000001"})
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="claude-sonnet", max_tokens=300, messages=MESSAGES)
    assert caught.value.status_code == 402
    body: Any = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "billing_error"
    assert "budget" in body["error"]["message"] and body["error"]["code"] == "budget_exceeded"
    assert gw.mock_stats()["requests"] == []


def test_bad_key_and_unknown_path_are_anthropic_shaped(gw: Gateway) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        anthropic.Anthropic(base_url=gw.url, api_key="wrong", max_retries=0).messages.create(
            model="claude-sonnet", max_tokens=10, messages=MESSAGES
        )
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    r = httpx.post(f"{gw.url}/v1/messages/batches", json={}, timeout=10)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


def test_upstream_client_error_is_reshaped_for_the_client(gw: Gateway) -> None:
    gw.script("gpt-4o-mini", [{"status": 400}])
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(gw).messages.create(model="gpt-4o-mini", max_tokens=10, messages=MESSAGES)
    body: Any = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"


def test_fallback_crosses_providers(gw: Gateway) -> None:
    gw.script("gpt-4o", [], default={"status": 500})
    raw = sdk(gw).messages.with_raw_response.create(
        model="gpt-4o", max_tokens=100, messages=MESSAGES
    )
    assert raw.headers["x-spendgate-model"] == "claude-sonnet"
    assert len(raw.parse().content[0].text.split()) == 20  # type: ignore[union-attr]


@BOTH
def test_a_cut_stream_is_charged_like_a_cut_chat_stream(gw: Gateway, model: str) -> None:
    gw.script(UPSTREAM[model], [{"reset_after_chunks": 5}])
    client = sdk(gw, **{"x-workflow-id": f"wf-cut-{model}"})
    stream = client.messages.stream(model=model, max_tokens=100, messages=MESSAGES)
    with pytest.raises(anthropic.APIStatusError), stream as events:
        list(events)
    state = settled(gw.url, f"wf-cut-{model}", 1)
    truth = truth_usd(gw.mock_url)
    assert truth > 0 and spent(state) == truth


def test_prompt_caching_passes_through_and_is_reported(gw: Gateway) -> None:
    gw.script("claude-sonnet-4-5", [{"cached_tokens": 4, "cache_write_tokens": 3}])
    system: Any = [
        {"type": "text", "text": "A long system prompt", "cache_control": {"type": "ephemeral"}}
    ]
    message = sdk(gw).messages.create(
        model="claude-sonnet", max_tokens=50, system=system, messages=MESSAGES
    )
    assert message.usage.cache_read_input_tokens == 4
    assert message.usage.cache_creation_input_tokens == 3
    [record] = records(gw.mock_url)
    assert record["body"]["system"][0]["cache_control"] == {"type": "ephemeral"}


def test_models_and_wrong_methods_for_the_anthropic_sdk(gw: Gateway) -> None:
    assert sdk(gw).models.retrieve("claude-sonnet").id == "claude-sonnet"
    r = httpx.get(f"{gw.url}/v1/messages", headers={"x-api-key": KEY_RESEARCH}, timeout=10)
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"
    assert r.headers["allow"] == "POST"


def test_thinking_is_not_sent_to_a_model_that_cannot_reason(gw: Gateway) -> None:
    """Translated thinking becomes ``reasoning_effort`` only for OpenAI's reasoning
    models: gpt-4o-mini would refuse it, so it is left out and the call is served."""
    message = sdk(gw).messages.create(
        model="gpt-4o-mini",
        max_tokens=3000,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=MESSAGES,
    )
    assert message.stop_reason == "end_turn"
    [record] = records(gw.mock_url, "gpt-4o-mini")
    assert "reasoning_effort" not in record["body"] and record["body"]["max_tokens"] == 3000
