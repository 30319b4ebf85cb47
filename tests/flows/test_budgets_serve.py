"""Budgets that serve: a cap too small for a request's worst case lowers its output
limit instead of refusing it; fallbacks that cannot serve a request are skipped, and
those that can are translated faithfully."""

from __future__ import annotations

import asyncio
import json
from decimal import ROUND_CEILING, Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.support.gateway import KEY_RESEARCH, Gateway, run_gateway
from tests.support.ledger import records, spent, status

MESSAGES = [{"role": "user", "content": "hi"}]
AUTH = {"authorization": f"Bearer {KEY_RESEARCH}"}
RATES = {"gpt-4o": (Decimal("2.50"), Decimal("10")), "claude-sonnet-4-5": (Decimal(3), Decimal(15))}


def truth_usd(mock: str) -> Decimal:
    """What the mock generated, at the models' list prices (each call rounded up to a
    whole micro-USD, as every charge is)."""
    total = Decimal(0)
    for r in records(mock):
        rate_in, rate_out = RATES[r["model"]]
        micros = r["prompt_tokens"] * rate_in + r["completion_tokens"] * rate_out
        total += micros.to_integral_value(rounding=ROUND_CEILING) / 10**6
    return total


def chat(gw: Gateway, workflow: str, cap: str, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": "gpt-4o", "messages": MESSAGES, **body},
        headers={**AUTH, "x-workflow-id": workflow, "x-workflow-budget-usd": cap},
        timeout=30,
    )


def sent_limit(record: dict[str, Any]) -> int | None:
    body = record["body"]
    value = body.get("max_tokens", body.get("max_completion_tokens"))
    return value if isinstance(value, int) else None


def test_a_small_cap_lowers_the_output_limit_instead_of_refusing(gateway: Gateway) -> None:
    """gpt-4o's 16,384 output tokens may cost $0.164: a $0.10 cap used to answer 402."""
    r = chat(gateway, "wf-clamp", "0.10")
    assert r.status_code == 200
    clamp = int(r.headers["x-spendgate-max-tokens"])
    assert 256 <= clamp < 16384
    [record] = records(gateway.mock_url)
    assert sent_limit(record) == clamp
    assert Decimal(r.headers["x-spendgate-cost-usd"]) == truth_usd(gateway.mock_url)


@pytest.mark.parametrize("stream", [False, True])
def test_forty_clamped_requests_never_spend_past_the_cap(gateway: Gateway, stream: bool) -> None:
    gateway.script("gpt-4o", [], default={"completion_tokens": 3000, "delay_s": 0.05})

    async def one(client: httpx.AsyncClient) -> int:
        body = {"model": "gpt-4o", "messages": MESSAGES, "stream": stream}
        headers = {**AUTH, "x-workflow-id": "wf-forty", "x-workflow-budget-usd": "0.10"}
        r = await client.post("/v1/chat/completions", json=body, headers=headers)
        await r.aread()
        return r.status_code

    async def storm() -> list[int]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            return await asyncio.gather(*[one(client) for _ in range(40)])

    statuses = asyncio.run(storm())
    # The first reservation holds what the cap has left; the others are refused while
    # it runs (the cap is never passed, whatever the order).
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 402}
    truth = truth_usd(gateway.mock_url)
    assert truth <= Decimal("0.10")
    assert spent(status(gateway.url, "wf-forty")) == truth


def test_a_limit_the_caller_set_is_never_raised(config: dict[str, Any], mock: str) -> None:
    config["budgets"] = {"min_output_tokens": 10}
    with run_gateway(config, mock) as gw:
        r = chat(gw, "wf-own", "1", max_tokens=50)
        assert r.status_code == 200 and "x-spendgate-max-tokens" not in r.headers
        r = chat(gw, "wf-tight", "0.0005", max_tokens=50)  # pays for about 48 tokens
        assert r.status_code == 200
        lowered = int(r.headers["x-spendgate-max-tokens"])
        assert 10 <= lowered < 50
        assert [sent_limit(rec) for rec in records(mock)] == [50, lowered]


def test_below_the_minimum_output_or_with_the_clamp_off_is_402(
    config: dict[str, Any], mock: str
) -> None:
    with run_gateway(config, mock) as gw:
        assert chat(gw, "wf-tiny", "0.001").status_code == 402  # under 256 tokens: refused
    config["budgets"] = {"clamp_output": False}
    with run_gateway(config, mock) as gw:
        assert chat(gw, "wf-off", "0.10").status_code == 402
    assert records(mock) == []


def test_a_fallback_clamps_again_at_its_own_price(gateway: Gateway) -> None:
    gateway.script("gpt-4o", [], default={"status": 500})
    r = chat(gateway, "wf-fb", "0.10")
    assert r.status_code == 200 and r.headers["x-spendgate-model"] == "claude-sonnet"
    claude = [rec for rec in records(gateway.mock_url) if rec["model"] == "claude-sonnet-4-5"]
    clamp = int(r.headers["x-spendgate-max-tokens"])
    assert sent_limit(claude[0]) == clamp
    assert clamp * Decimal(15) / 10**6 <= Decimal("0.10")  # at Claude's output price


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_falls_back_to_claude_in_the_schemas_shape(
    gateway: Gateway, stream: bool
) -> None:
    gateway.script("gpt-4o", [], default={"status": 500})
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY_RESEARCH, max_retries=0)
    fmt = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": SCHEMA}}
    kwargs: dict[str, Any] = {"model": "gpt-4o", "messages": MESSAGES, "response_format": fmt}
    if stream:
        chunks = list(client.chat.completions.create(stream=True, **kwargs))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [
            c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
        ]
        assert finish == ["stop"]
    else:
        done = client.chat.completions.create(**kwargs)
        text = done.choices[0].message.content or ""
        assert done.choices[0].finish_reason == "stop" and not done.choices[0].message.tool_calls
    answer = json.loads(text)
    assert set(answer) == {"city", "days"} and isinstance(answer["days"], int)
    claude = [rec for rec in records(gateway.mock_url) if rec["model"] == "claude-sonnet-4-5"]
    assert claude[0]["body"]["tool_choice"] == {"type": "tool", "name": "forecast"}


def test_a_request_claude_cannot_serve_names_the_primarys_failure(gateway: Gateway) -> None:
    gateway.script("gpt-4o", [], default={"status": 500})
    for extra in ({"n": 2}, {"logprobs": True}):
        r = chat(gateway, "wf-n", "1", **extra)
        assert r.status_code == 502
        message = r.json()["error"]["message"]
        assert message.index("gpt-4o") < message.index("claude-sonnet skipped")
        assert "500" in message
    assert {rec["model"] for rec in records(gateway.mock_url)} == {"gpt-4o"}
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'reason="incompatible"' in metrics


def test_a_prompt_beyond_a_fallbacks_context_window_skips_it(
    config: dict[str, Any], mock: str
) -> None:
    config["models"]["claude-sonnet"]["context_window"] = 1000
    with run_gateway(config, mock) as gw:
        gw.script("gpt-4o", [], default={"status": 500})
        big = [{"role": "user", "content": "word " * 3000}]
        r = chat(gw, "wf-ctx", "5", messages=big)
        assert r.status_code == 502 and "context window of 1000" in r.json()["error"]["message"]
        assert {rec["model"] for rec in records(mock)} == {"gpt-4o"}


def test_an_output_limit_beyond_the_models_maximum_is_lowered_to_it(
    config: dict[str, Any], mock: str
) -> None:
    config["models"]["claude-sonnet"]["max_output_tokens"] = 8000
    with run_gateway(config, mock) as gw:
        gw.script("gpt-4o", [], default={"status": 500})
        r = chat(gw, "wf-max", "100", max_tokens=100_000)
        assert r.status_code == 200 and r.headers["x-spendgate-model"] == "claude-sonnet"
        claude = [rec for rec in records(mock) if rec["model"] == "claude-sonnet-4-5"]
        assert sent_limit(claude[0]) == 8000
