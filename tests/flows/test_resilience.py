"""Retries, Retry-After, deadlines, breakers and fallback, against the mock over sockets."""

from __future__ import annotations

import asyncio
import json
import time
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

import httpx
import openai
import pytest

from tests.support.clock import FakeClock
from tests.support.gateway import ADMIN_KEY, KEY_RESEARCH, Gateway, run_gateway

CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}


def post(
    gw: Gateway, model: str, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    with gw.client() as c:
        return c.post(
            "/v1/chat/completions", json={**CHAT, "model": model, **body}, headers=headers or {}
        )


def calls(gw: Gateway, model: str) -> list[dict[str, Any]]:
    return [r for r in gw.mock_stats()["requests"] if r["model"] == model]


def upstream_model_calls(gw: Gateway, upstream: str) -> int:
    return len(calls(gw, upstream))


def breakers(gw: Gateway) -> dict[str, Any]:
    r = httpx.get(f"{gw.url}/admin/breakers", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 200
    result: dict[str, Any] = r.json()["breakers"]
    return result


def test_retry_after_seconds_is_waited_in_full(gateway: Gateway) -> None:
    gateway.script("gpt-4o-mini", [{"status": 429, "headers": {"Retry-After": "1.2"}}])
    r = post(gateway, "gpt-4o-mini")
    assert r.status_code == 200 and r.headers["x-spendgate-attempts"] == "2"
    first, second = calls(gateway, "gpt-4o-mini")
    assert second["started"] - first["started"] >= 1.2


def test_retry_after_ms_takes_precedence(gateway: Gateway) -> None:
    gateway.script(
        "gpt-4o-mini", [{"status": 429, "headers": {"retry-after-ms": "300", "Retry-After": "20"}}]
    )
    r = post(gateway, "gpt-4o-mini")
    assert r.status_code == 200
    first, second = calls(gateway, "gpt-4o-mini")
    assert 0.3 <= second["started"] - first["started"] < 5


def test_retry_after_http_date(gateway: Gateway) -> None:
    date = formatdate(time.time() + 2, usegmt=True)
    gateway.script("gpt-4o-mini", [{"status": 503, "headers": {"Retry-After": date}}])
    r = post(gateway, "gpt-4o-mini")
    assert r.status_code == 200
    _, second = calls(gateway, "gpt-4o-mini")
    assert second["started"] >= parsedate_to_datetime(date).timestamp() - 0.01


def test_retry_after_beyond_deadline_answers_429_at_once(gateway: Gateway) -> None:
    gateway.script("gpt-4o-mini", [], default={"status": 429, "headers": {"Retry-After": "30"}})
    started = time.monotonic()
    r = post(gateway, "gpt-4o-mini", {"x-request-timeout": "5"})
    assert time.monotonic() - started < 2
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert r.headers["retry-after"] == "30" and r.headers["x-should-retry"] == "false"
    assert len(calls(gateway, "gpt-4o-mini")) == 1


def test_retry_after_beyond_deadline_moves_to_the_fallback(gateway: Gateway) -> None:
    gateway.script("gpt-4o", [], default={"status": 429, "headers": {"Retry-After": "30"}})
    started = time.monotonic()
    r = post(gateway, "gpt-4o", {"x-request-timeout": "5"})
    assert time.monotonic() - started < 2
    assert r.status_code == 200 and r.headers["x-spendgate-model"] == "claude-sonnet"
    assert r.headers["x-spendgate-attempts"] == "2"


def test_client_error_is_one_attempt_and_leaves_the_breaker(gateway: Gateway) -> None:
    gateway.script("gpt-4o", [], default={"status": 400})
    for _ in range(8):
        assert post(gateway, "gpt-4o").status_code == 400
    assert len(calls(gateway, "gpt-4o")) == 8 and calls(gateway, "claude-sonnet-4-5") == []
    assert breakers(gateway)["gpt-4o"] == {
        "state": "closed",
        "failures": 0,
        "seconds_until_half_open": 0.0,
    }


def test_deadline_passes_while_upstream_thinks(gateway: Gateway) -> None:
    gateway.script("gpt-4o-mini", [{"delay_s": 3}])
    started = time.monotonic()
    r = post(gateway, "gpt-4o-mini", {"x-request-timeout": "0.5"})
    assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
    assert time.monotonic() - started < 2


def breaker_config(config: dict[str, Any], fail_max: int = 3) -> dict[str, Any]:
    config["models"]["gpt-4o"]["breaker"] = {"fail_max": fail_max, "reset_timeout_s": 60}
    config["models"]["gpt-4o"]["retry"] = {"max_attempts": 1}
    return config


async def concurrent(gw: Gateway, n: int, model: str, **body: Any) -> list[httpx.Response]:
    async with httpx.AsyncClient(
        base_url=gw.url, timeout=30, headers={"authorization": f"Bearer {KEY_RESEARCH}"}
    ) as client:
        return await asyncio.gather(
            *[
                client.post("/v1/chat/completions", json={**CHAT, "model": model, **body})
                for _ in range(n)
            ]
        )


def test_breaker_opens_skips_primary_and_admits_one_trial(
    config: dict[str, Any], mock: str
) -> None:
    clock = FakeClock()
    with run_gateway(breaker_config(config), mock, clock=clock) as gw:
        gw.script("gpt-4o", [], default={"status": 500})
        for _ in range(3):
            assert post(gw, "gpt-4o").headers["x-spendgate-model"] == "claude-sonnet"
        assert breakers(gw)["gpt-4o"]["state"] == "open"
        for _ in range(5):
            r = post(gw, "gpt-4o")
            assert r.status_code == 200 and r.headers["x-spendgate-model"] == "claude-sonnet"
        assert len(calls(gw, "gpt-4o")) == 3
        clock.advance(61)
        gw.script("gpt-4o", [], default={"delay_s": 0.5})
        responses = asyncio.run(concurrent(gw, 6, "gpt-4o"))
        served = sorted(r.headers["x-spendgate-model"] for r in responses)
        assert served == ["claude-sonnet"] * 5 + ["gpt-4o"]
        assert len(calls(gw, "gpt-4o")) == 4
        assert breakers(gw)["gpt-4o"]["state"] == "closed"


def test_outage_then_recovery(config: dict[str, Any], mock: str) -> None:
    clock = FakeClock()
    with run_gateway(breaker_config(config), mock, clock=clock) as gw:
        gw.script("gpt-4o", [], default={"status": 503})
        for _ in range(12):
            r = post(gw, "gpt-4o")
            assert r.status_code == 200 and r.headers["x-spendgate-model"] == "claude-sonnet"
            clock.advance(5)  # a minute of outage, in 5 s steps
        primary_calls = len(calls(gw, "gpt-4o"))
        assert primary_calls <= 3 + 1  # fail_max, then at most one trial per reset timeout
        gw.script("gpt-4o", [])  # the primary recovers
        clock.advance(61)
        served = [post(gw, "gpt-4o").headers["x-spendgate-model"] for _ in range(5)]
        assert served == ["gpt-4o"] * 5


def test_all_breakers_open_is_503_with_retry_after(config: dict[str, Any], mock: str) -> None:
    config["models"]["gpt-4o-mini"]["breaker"] = {"fail_max": 1, "reset_timeout_s": 42}
    with run_gateway(config, mock, clock=FakeClock()) as gw:
        gw.script("gpt-4o-mini", [], default={"status": 500})
        assert post(gw, "gpt-4o-mini").status_code == 502
        r = post(gw, "gpt-4o-mini")
        assert r.status_code == 503 and r.json()["error"]["code"] == "no_route_available"
        assert r.headers["retry-after"] == "42"


def sdk(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY_RESEARCH, max_retries=0)


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def test_openai_primary_falls_back_to_anthropic_with_tool_calls(gateway: Gateway) -> None:
    gateway.script("gpt-4o", [], default={"status": 503})
    gateway.script(
        "claude-sonnet-4-5",
        [],
        default={"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}},
    )
    client = sdk(gateway)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=CHAT["messages"], tools=TOOLS
    )
    completion = raw.parse()
    assert raw.headers["x-spendgate-model"] == "claude-sonnet"
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert completion.choices[0].finish_reason == "tool_calls"
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=CHAT["messages"], tools=TOOLS, stream=True
        )
    )
    args = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert json.loads(args) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_stream_reset_mid_way_raises_and_splices_nothing(gateway: Gateway) -> None:
    gateway.script("gpt-4o", [{"reset_after_chunks": 3}])
    received: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in sdk(gateway).chat.completions.create(
            model="gpt-4o", messages=CHAT["messages"], stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert len(received) == 3
    assert [r["model"] for r in gateway.mock_stats()["requests"]] == ["gpt-4o"]


def test_stream_failure_before_first_byte_fails_over(gateway: Gateway) -> None:
    gateway.script("gpt-4o", [], default={"reset_after_chunks": 0})
    chunks = list(
        sdk(gateway).chat.completions.create(model="gpt-4o", messages=CHAT["messages"], stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 20
    assert calls(gateway, "claude-sonnet-4-5")


def test_context_window_error_goes_to_the_context_fallback(
    config: dict[str, Any], mock: str
) -> None:
    config["models"]["gpt-4o"]["context_window_fallbacks"] = ["claude-sonnet"]
    config["models"]["gpt-4o"]["fallbacks"] = []
    with run_gateway(config, mock) as gw:
        gw.script("gpt-4o", [{"status": 400, "context_window": True}])
        r = post(gw, "gpt-4o")
        assert r.status_code == 200 and r.headers["x-spendgate-model"] == "claude-sonnet"
        assert len(calls(gw, "gpt-4o")) == 1


def test_content_policy_error_reaches_the_client_after_one_attempt(gateway: Gateway) -> None:
    gateway.script("gpt-4o", [{"status": 400, "content_policy": True}])
    r = post(gateway, "gpt-4o")
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_policy_violation"
    assert len(gateway.mock_stats()["requests"]) == 1


def test_retry_budget_bounds_an_outage(config: dict[str, Any], mock: str) -> None:
    config["models"]["gpt-4o-mini"]["breaker"] = {"fail_max": 100000, "reset_timeout_s": 60}
    config["models"]["gpt-4o-mini"]["retry"] = {
        "max_attempts": 3,
        "initial_backoff_s": 0.05,
        "max_backoff_s": 0.1,
    }
    with run_gateway(config, mock) as gw:
        gw.script("gpt-4o-mini", [], default={"status": 503})
        responses = asyncio.run(concurrent(gw, 200, "gpt-4o-mini"))
        assert {r.status_code for r in responses} == {502}
        total = len(calls(gw, "gpt-4o-mini"))
        # Without a budget: 200 x 3 = 600 calls. With it: each retry needs a token
        # (retries in flight <= 20% of requests in flight, at least 3).
        assert 200 <= total <= 300, total


def test_sdk_retrying_means_one_attempt_per_model(gateway: Gateway) -> None:
    gateway.script("gpt-4o-mini", [], default={"status": 503})
    r = post(gateway, "gpt-4o-mini", {"x-stainless-retry-count": "1"})
    assert r.status_code == 502 and r.headers["x-should-retry"] == "false"
    assert len(calls(gateway, "gpt-4o-mini")) == 1
