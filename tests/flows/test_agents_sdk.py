"""The OpenAI Agents SDK in its default mode (the Responses API) runs an agent with one
function tool through the gateway, streamed and not, under a workflow budget."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from agents import Agent, RunConfig, Runner, function_tool, set_tracing_disabled
from agents.models.openai_provider import OpenAIProvider

from tests.support.gateway import KEY_RESEARCH, Gateway, run_gateway
from tests.support.ledger import flat_priced, records, settled, spent, truth_usd

set_tracing_disabled(True)  # no trace export: there is no internet here

TOOL_STEP = {"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@pytest.fixture
def gw(config: dict[str, Any], mock: str) -> Any:
    with run_gateway(flat_priced(config), mock) as gateway:
        yield gateway


AGENT = Agent(
    name="weather", instructions="Answer with the tool.", tools=[get_weather], model="gpt-4o"
)
QUESTION = "What is the weather in Paris?"


async def run_agent(gw: Gateway, workflow: str, budget: str, *, streamed: bool) -> Any:
    headers = {"x-workflow-id": workflow, "x-workflow-budget-usd": budget}
    async with openai.AsyncOpenAI(
        base_url=f"{gw.url}/v1", api_key=KEY_RESEARCH, max_retries=0, default_headers=headers
    ) as client:
        config = RunConfig(model_provider=OpenAIProvider(openai_client=client))
        if not streamed:
            return (await Runner.run(AGENT, QUESTION, run_config=config)).final_output
        result = Runner.run_streamed(AGENT, QUESTION, run_config=config)
        kinds = [event.type async for event in result.stream_events()]
        assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
        return result.final_output


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
def test_agent_with_a_tool_runs_under_a_budget(gw: Gateway, streamed: bool) -> None:
    gw.script("gpt-4o", [TOOL_STEP])
    output = asyncio.run(run_agent(gw, f"wf-agent-{streamed}", "2.0", streamed=streamed))
    assert len(output.split()) == 20
    first, second = records(gw.mock_url, "gpt-4o")
    assert first["path"] == second["path"] == "/v1/responses"
    assert first["body"]["tools"][0]["name"] == "get_weather"
    outputs = [i for i in second["body"]["input"] if i.get("type") == "function_call_output"]
    assert outputs[0]["output"] == "sunny in Paris"
    # Enforced: each call's output limit was lowered to what the budget can pay for.
    assert all(0 < r["body"]["max_output_tokens"] < 2000 for r in (first, second))
    # Accounted: the workflow was charged exactly what the provider generated.
    state = settled(gw.url, f"wf-agent-{streamed}", 2)
    assert spent(state) == truth_usd(gw.mock_url)


def test_agent_over_its_budget_is_refused_before_any_call(gw: Gateway) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        asyncio.run(run_agent(gw, "wf-agent-poor", "0.01", streamed=False))
    assert caught.value.status_code == 402
    assert gw.mock_stats()["requests"] == []
