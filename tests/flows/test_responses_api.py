"""The OpenAI Responses API through the gateway, with the official SDKs as clients: native
on an OpenAI-kind model, translated on a Claude model (also as a fallback mid-request)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest
from agents import Agent, ModelSettings, RunConfig, Runner, function_tool, set_tracing_disabled
from agents.models.openai_provider import OpenAIProvider
from openai.types.shared import Reasoning

from gateway.mock_provider.anthropic_api import THOUGHT
from tests.support.gateway import KEY_RESEARCH, Gateway, run_gateway
from tests.support.ledger import TOKEN_USD, flat_priced, records, settled, spent, truth_usd

ALLOWANCE_USD = 16 * TOKEN_USD  # budgets.cut_stream_allowance_tokens, the default
set_tracing_disabled(True)  # no trace export: there is no internet here


@pytest.fixture
def gw(config: dict[str, Any], mock: str) -> Any:
    with run_gateway(flat_priced(config), mock) as gateway:
        yield gateway


def sdk(gw: Gateway, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gw.url}/v1", api_key=KEY_RESEARCH, max_retries=0, default_headers=headers
    )


def test_plain_response_served_natively(gw: Gateway) -> None:
    raw = sdk(gw).responses.with_raw_response.create(
        model="gpt-4o", input="Say hello", instructions="Be brief"
    )
    response = raw.parse()
    assert len(response.output_text.split()) == 20
    assert response.usage is not None and response.usage.output_tokens == 20
    assert raw.headers["x-spendgate-model"] == "gpt-4o"
    assert float(raw.headers["x-spendgate-cost-usd"]) > 0
    [record] = gw.mock_stats()["requests"]
    assert record["path"] == "/v1/responses" and record["body"]["instructions"] == "Be brief"


def test_stream_served_natively_ends_with_completed_and_usage(gw: Gateway) -> None:
    events = list(sdk(gw).responses.create(model="gpt-4o", input="Say hello", stream=True))
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert len(text.split()) == 20
    final = events[-1].response  # type: ignore[union-attr]
    assert final.usage is not None and final.usage.output_tokens == 20
    [record] = gw.mock_stats()["requests"]
    assert "stream_options" not in record["body"]  # not a Responses field


def test_stream_fails_over_to_claude_with_a_valid_event_stream(gw: Gateway) -> None:
    gw.script("gpt-4o", [], default={"status": 500})
    raw = sdk(gw).responses.with_raw_response.create(
        model="gpt-4o", input="Say hello", instructions="Be brief", stream=True
    )
    assert raw.headers["x-spendgate-model"] == "claude-sonnet"
    events = list(raw.parse())
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == text and len(text.split()) == 20
    claude = records(gw.mock_url, "claude-sonnet-4-5")
    assert final.usage is not None and final.usage.output_tokens == 20
    assert final.usage.input_tokens == claude[0]["prompt_tokens"]
    assert claude[0]["body"]["system"] == "Be brief"


def test_plain_fallback_to_claude_translates_a_tool_call(gw: Gateway) -> None:
    gw.script("gpt-4o", [], default={"status": 503})
    gw.script("claude-sonnet-4-5", [{"tool_call": {"name": "lookup", "arguments": {"q": "x"}}}])
    tool = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
    response = sdk(gw).responses.create(model="gpt-4o", input="find x", tools=[tool])  # type: ignore[list-item]
    [call] = response.output
    assert call.type == "function_call" and call.name == "lookup"
    assert json.loads(call.arguments) == {"q": "x"}
    [record] = records(gw.mock_url, "claude-sonnet-4-5")
    assert record["body"]["tools"][0]["name"] == "lookup"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_reasoning_effort_on_claude_brings_its_thinking_as_a_reasoning_item(
    gw: Gateway, stream: bool
) -> None:
    client = sdk(gw, **{"x-workflow-id": f"wf-think-{stream}"})
    request: dict[str, Any] = {"model": "claude-sonnet", "input": "Say hello"}
    request["reasoning"] = {"effort": "low"}
    if stream:
        events = list(client.responses.create(**request, stream=True))
        summary = "".join(
            e.delta for e in events if e.type == "response.reasoning_summary_text.delta"
        )
        assert events[-1].type == "response.completed"
        response = events[-1].response
    else:
        response = client.responses.create(**request)
        summary = ""
    [record] = records(gw.mock_url, "claude-sonnet-4-5")
    assert record["path"] == "/v1/messages"  # the provider's own Messages API
    assert record["body"]["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and message.type == "message"
    thought = reasoning.summary[0].text
    assert thought == THOUGHT and (not stream or summary == thought)
    assert len(response.output_text.split()) == 20
    # The thinking is billed as output: in the usage, and in what the workflow paid.
    assert response.usage is not None
    assert response.usage.output_tokens == record["completion_tokens"] > 20
    state = settled(gw.url, f"wf-think-{stream}", 1)
    assert spent(state) == truth_usd(gw.mock_url)


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


async def run_thinking_agent(gw: Gateway) -> Any:
    agent = Agent(
        name="weather",
        instructions="Use the tool.",
        tools=[get_weather],
        model="claude-sonnet",
        model_settings=ModelSettings(reasoning=Reasoning(effort="low")),
    )
    headers = {"x-workflow-id": "wf-agent-think"}
    async with openai.AsyncOpenAI(
        base_url=f"{gw.url}/v1", api_key=KEY_RESEARCH, max_retries=0, default_headers=headers
    ) as client:
        config = RunConfig(model_provider=OpenAIProvider(openai_client=client))
        result = Runner.run_streamed(agent, "Weather in Paris?", run_config=config)
        kinds = [event.type async for event in result.stream_events()]
        assert "run_item_stream_event" in kinds
        return result


def test_an_agent_thinks_on_claude_and_its_tool_loop_goes_on(gw: Gateway) -> None:
    tool = {"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    gw.script("claude-sonnet-4-5", [tool])
    result = asyncio.run(run_thinking_agent(gw))
    assert len(result.final_output.split()) == 20
    assert any(item.type == "reasoning_item" for item in result.new_items)
    first, second = records(gw.mock_url, "claude-sonnet-4-5")
    assert first["body"]["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    # The reasoning item the agent sent back is dropped, so the turn answering the tool
    # call cannot carry its thinking: thinking is left out there (Anthropic refuses it).
    assert "thinking" not in second["body"]
    assert [m["role"] for m in second["body"]["messages"]] == ["user", "assistant", "user"]
    assert second["body"]["messages"][2]["content"][0]["content"] == "sunny in Paris"
    state = settled(gw.url, "wf-agent-think", 2)
    assert spent(state) == truth_usd(gw.mock_url)


def test_what_claude_cannot_take_is_a_400_naming_the_field(gw: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gw).responses.create(
            model="claude-sonnet",
            input="hi",
            tools=[{"type": "web_search"}],
        )
    assert caught.value.body["code"] == "invalid_request"  # type: ignore[index]
    assert caught.value.body["param"] == "tools[0]"  # type: ignore[index]
    assert "built-in tools" in caught.value.message
    assert gw.mock_stats()["requests"] == []  # never sent


def test_state_at_the_provider_pins_the_request_to_it(gw: Gateway) -> None:
    gw.script("gpt-4o", [], default={"status": 500})
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gw).responses.create(model="gpt-4o", input="go on", previous_response_id="resp_1")
    assert caught.value.status_code == 502
    assert "pinned" in caught.value.message and "previous_response_id" in caught.value.message
    assert records(gw.mock_url, "claude-sonnet-4-5") == []


def test_a_cut_stream_is_charged_like_a_cut_chat_stream(gw: Gateway) -> None:
    gw.script("gpt-4o", [{"reset_after_chunks": 5}])
    gw.script("claude-sonnet-4-5", [{"reset_after_chunks": 5}])
    stream = sdk(gw, **{"x-workflow-id": "wf-cut"}).responses.create(
        model="gpt-4o", input="Say hello", stream=True
    )
    with pytest.raises(openai.APIError):
        list(stream)
    state = settled(gw.url, "wf-cut", 1)
    truth = truth_usd(gw.mock_url)
    assert truth > 0 and spent(state) == truth  # the prompt and the 5 tokens that arrived


def test_a_stream_the_client_leaves_is_charged_within_the_allowance(gw: Gateway) -> None:
    gw.script("gpt-4o", [{"chunk_delay_s": 0.05, "completion_tokens": 200}])
    body = {"model": "gpt-4o", "input": "hi", "stream": True}
    headers = {"authorization": f"Bearer {KEY_RESEARCH}", "x-workflow-id": "wf-left"}
    with httpx.stream("POST", f"{gw.url}/v1/responses", json=body, headers=headers) as r:
        deltas = 0
        for line in r.iter_lines():
            deltas += line == "event: response.output_text.delta"
            if deltas == 10:
                break
    state = settled(gw.url, "wf-left", 1)
    [record] = records(gw.mock_url)
    assert record["outcome"] == "cancelled" and 10 <= record["completion_tokens"] < 200
    truth = truth_usd(gw.mock_url)
    assert truth <= spent(state) <= truth + ALLOWANCE_USD


def test_budget_refusal_is_openai_shaped(gw: Gateway) -> None:
    client = sdk(gw, **{"x-workflow-id": "wf-poor", "x-workflow-budget-usd": "0.000001"})
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(model="gpt-4o", input="hi")
    assert caught.value.status_code == 402
    assert caught.value.body["code"] == "budget_exceeded"  # type: ignore[index]
    assert gw.mock_stats()["requests"] == []


def test_unknown_path_is_a_json_not_found(gw: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(gw).post("/assistants", cast_to=httpx.Response, body={})
    assert "not served" in caught.value.message
    assert caught.value.body["code"] == "not_found"  # type: ignore[index]
    r = httpx.get(f"{gw.url}/v1/responses", timeout=10)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_one_model_by_id(gw: Gateway) -> None:
    model = sdk(gw).models.retrieve("claude-sonnet")
    assert model.id == "claude-sonnet"
    with pytest.raises(openai.NotFoundError):
        sdk(gw).models.retrieve("no-such-model")
