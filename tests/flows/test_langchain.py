"""LangChain's ChatAnthropic through the gateway, configured as the README shows it:
a plain and a streamed call, on a Claude model and (translated) an OpenAI-kind one,
under a workflow that is charged what the mock provider generated."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_anthropic import ChatAnthropic

from tests.support.gateway import KEY_RESEARCH, Gateway, run_gateway
from tests.support.ledger import flat_priced, records, settled, spent, truth_usd

UPSTREAM = {"claude-sonnet": "claude-sonnet-4-5", "gpt-4o-mini": "gpt-4o-mini"}


@pytest.fixture
def gw(config: dict[str, Any], mock: str) -> Any:
    with run_gateway(flat_priced(config), mock) as gateway:
        yield gateway


@pytest.mark.parametrize("model", ["claude-sonnet", "gpt-4o-mini"])
def test_invoke_and_stream_are_served_and_charged(gw: Gateway, model: str) -> None:
    workflow = f"lc-{model}"
    llm = ChatAnthropic(  # type: ignore[call-arg]
        model=model,
        base_url=gw.url,
        api_key=KEY_RESEARCH,
        default_headers={"X-Workflow-Id": workflow},
        max_tokens=100,
        max_retries=0,
    )
    answer = llm.invoke("Say hello")
    assert isinstance(answer.content, str) and len(answer.content.split()) == 20
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] == 20
    streamed = "".join(str(chunk.content) for chunk in llm.stream("Say hello again"))
    assert len(streamed.split()) == 20
    assert len(records(gw.mock_url, UPSTREAM[model])) == 2
    body = settled(gw.url, workflow, calls=2)
    assert spent(body) == truth_usd(gw.mock_url, UPSTREAM[model])
