"""Models with no config price are charged what genai-prices says, exactly, for what
the provider reported: OpenAI cache reads, Anthropic cache reads and writes, in plain
answers and in streams, in the response and in the workflow's spend."""

from __future__ import annotations

import json
import math
from typing import Any

import genai_prices
import httpx
import pytest

from accounting.pricing import micros_to_usd, usd_to_micros
from tests.support.gateway import KEY_RESEARCH, Gateway
from tests.support.ledger import records, settled

UPSTREAM = {"gpt-4o": ("gpt-4o", "openai"), "claude-sonnet": ("claude-sonnet-4-5", "anthropic")}
# ~1500 prompt tokens, so cache reads and writes are a real part of the price.
MESSAGES = [{"role": "user", "content": " ".join(["budget"] * 1500)}]


def genai_micros(record: dict[str, Any], model: str, provider: str) -> int:
    """genai-prices' price of what the mock reported, rounded up to a micro-USD."""
    counts = {
        "input_tokens": record["prompt_tokens"],  # the whole prompt, as genai-prices counts
        "cache_read_tokens": record["cached_tokens"],
        "cache_write_tokens": record["cache_write_tokens"],
        "output_tokens": record["completion_tokens"],
    }
    usage = genai_prices.Usage(**{k: v for k, v in counts.items() if v})
    price = genai_prices.calc_price(usage, model, provider_id=provider)
    return math.ceil(price.total_price * 10**6)


def ask(gw: Gateway, model: str, workflow: str, *, stream: bool) -> int:
    """One request; the cost the gateway reported for it, in micro-USD."""
    body: dict[str, Any] = {"model": model, "messages": MESSAGES, "max_tokens": 30}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    headers = {
        "authorization": f"Bearer {KEY_RESEARCH}",
        "x-workflow-id": workflow,
        "x-workflow-budget-usd": "5",
    }
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    if not stream:
        return usd_to_micros(r.headers["x-spendgate-cost-usd"])
    [tail] = [line for line in r.text.splitlines() if line.startswith(": spendgate ")]
    return usd_to_micros(json.loads(tail.removeprefix(": spendgate "))["cost_usd"])


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_unpriced_models_cost_what_genai_prices_says(gateway: Gateway, stream: bool) -> None:
    gateway.script("gpt-4o", [{"cached_tokens": 1024}])
    gateway.script("claude-sonnet-4-5", [{"cached_tokens": 600, "cache_write_tokens": 700}])
    costs = {model: ask(gateway, model, "wf-prices", stream=stream) for model in UPSTREAM}
    state = settled(gateway.url, "wf-prices", 2)
    truth = {}
    for model, (upstream, provider) in UPSTREAM.items():
        [record] = records(gateway.mock_url, upstream)
        assert record["outcome"] == "ok" and record["prompt_tokens"] > 1500
        truth[model] = genai_micros(record, upstream, provider)
    anthropic = records(gateway.mock_url, "claude-sonnet-4-5")[0]
    assert (anthropic["cached_tokens"], anthropic["cache_write_tokens"]) == (600, 700)
    assert records(gateway.mock_url, "gpt-4o")[0]["cached_tokens"] == 1024
    assert costs == truth
    assert state["spent_usd"] == micros_to_usd(sum(truth.values()))
    assert state["tokens"]["cache_write"] == 700
    assert state["tokens"]["cached_input"] == 1024 + 600
