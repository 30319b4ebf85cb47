"""Streams that survive: silent routes fail over at once, a real first-token limit, and
a stream cut mid-way continued by another attempt in the same client stream."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from gateway.mock_provider.tokens import completion_text, content_text
from tests.support.clock import FakeClock
from tests.support.gateway import KEY_RESEARCH, Gateway, run_gateway
from tests.support.ledger import flat_priced, records, spent, status, truth_usd

MESSAGES = [{"role": "user", "content": "hi"}]
WHOLE = completion_text(20)  # the mock's unbroken answer


def survive_config(config: dict[str, Any], *, continuation: str = "prefill") -> dict[str, Any]:
    config = flat_priced(config)
    for provider in config["providers"].values():
        provider.update(first_token_timeout_s=0.5, idle_timeout_s=0.5)
    config["models"]["claude-sonnet"]["continuation"] = continuation
    config["defaults"]["drain_timeout_s"] = 1
    return config


@pytest.fixture
def gw(config: dict[str, Any], mock: str) -> Any:
    with run_gateway(survive_config(config), mock) as gateway:
        yield gateway


def stream(gw: Gateway, model: str = "gpt-4o", **extra: Any) -> tuple[str, list[Any]]:
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY_RESEARCH, max_retries=0)
    headers = extra.pop("extra_headers", {"x-workflow-id": "wf-s"})
    chunks = list(
        client.chat.completions.create(
            model=model, messages=MESSAGES, stream=True, extra_headers=headers, **extra
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def upstream_calls(gw: Gateway, upstream: str) -> list[dict[str, Any]]:
    return records(gw.mock_url, upstream)


@pytest.mark.parametrize("streaming", [True, False])
def test_a_silent_primary_fails_over_after_one_first_byte_timeout(
    gw: Gateway, streaming: bool
) -> None:
    gw.script("gpt-4o", [], default={"hang": True})
    started = time.monotonic()
    if streaming:
        text, _ = stream(gw)
    else:
        r = httpx.post(
            f"{gw.url}/v1/chat/completions",
            json={"model": "gpt-4o", "messages": MESSAGES},
            headers={"authorization": f"Bearer {KEY_RESEARCH}"},
            timeout=30,
        )
        assert r.headers["x-spendgate-model"] == "claude-sonnet"
        text = r.json()["choices"][0]["message"]["content"]
    assert text == WHOLE and time.monotonic() - started < 2.5
    assert len(upstream_calls(gw, "gpt-4o")) == 1  # silence is not retried on itself


def test_a_late_first_token_fails_over_before_the_slow_primary_answers(gw: Gateway) -> None:
    gw.script("gpt-4o", [{"chunk_delay_s": 3}])  # headers and role at once, content at 3 s
    started = time.monotonic()
    text, _ = stream(gw)
    assert text == WHOLE and time.monotonic() - started < 2.0
    assert len(upstream_calls(gw, "gpt-4o")) == 1


def test_a_stream_cut_part_way_is_continued_by_the_fallback(gw: Gateway) -> None:
    gw.script("gpt-4o", [{"reset_after_chunks": 8}])
    text, chunks = stream(gw, stream_options={"include_usage": True})
    assert text == WHOLE  # the whole answer, nothing repeated
    assert {c.id for c in chunks} == {chunks[0].id}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert [f for f in finishes if f] == ["stop"]
    [cut] = upstream_calls(gw, "gpt-4o")
    [cont] = upstream_calls(gw, "claude-sonnet-4-5")
    assert cut["completion_tokens"] == 8 and cont["completion_tokens"] == 12
    prefill = cont["body"]["messages"][-1]
    assert prefill["role"] == "assistant"
    assert content_text(prefill["content"]) == completion_text(8).rstrip()
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 20
    assert usage.prompt_tokens == cut["prompt_tokens"] + cont["prompt_tokens"]
    state = status(gw.url, "wf-s")
    assert state["calls"] == 2 and spent(state) == truth_usd(gw.mock_url)


def test_the_same_model_continues_its_own_stream(config: dict[str, Any], mock: str) -> None:
    config = survive_config(config, continuation="none")
    config["models"]["gpt-4o"]["continuation"] = "prefill"
    with run_gateway(config, mock) as gw:
        gw.script("gpt-4o", [{"reset_after_chunks": 5}])
        text, _ = stream(gw)
        assert text == WHOLE
        first, second = upstream_calls(gw, "gpt-4o")
        assert first["outcome"] == "reset" and first["completion_tokens"] == 5
        assert second["body"]["continue_final_message"] is True
        assert second["body"]["messages"][-1]["content"] == completion_text(5)
        assert upstream_calls(gw, "claude-sonnet-4-5") == []


def test_a_stall_part_way_is_continued_within_the_idle_limit(gw: Gateway) -> None:
    gw.script("gpt-4o", [{"hang_after_chunks": 8}])
    started = time.monotonic()
    text, _ = stream(gw)
    assert text == WHOLE and time.monotonic() - started < 0.5 + 1.5
    assert spent(status(gw.url, "wf-s")) >= truth_usd(gw.mock_url)


@pytest.mark.parametrize("why", ["not_configured", "rejects_prefill"])
def test_a_cut_no_fallback_can_continue_ends_with_an_error_naming_the_cut(
    config: dict[str, Any], mock: str, why: str
) -> None:
    continuation = "none" if why == "not_configured" else "prefill"
    with run_gateway(survive_config(config, continuation=continuation), mock) as gw:
        gw.script("gpt-4o", [{"reset_after_chunks": 8}])
        gw.script("claude-sonnet-4-5", [{"reject_prefill": True}])
        with pytest.raises(openai.APIError) as caught:
            stream(gw)
        message = str(caught.value)
        assert "broke off" in message and "400" not in message and "prefill" not in message
        claude = upstream_calls(gw, "claude-sonnet-4-5")
        if why == "not_configured":
            assert claude == []  # never asked: capability-aware
        else:
            assert [r["status"] for r in claude] == [400]


def test_a_tool_call_cut_in_its_arguments_fails_cleanly(gw: Gateway) -> None:
    arguments = {"city": "Paris, France", "unit": "celsius", "days": 3}
    gw.script(
        "gpt-4o",
        [{"tool_call": {"name": "forecast", "arguments": arguments}, "reset_after_chunks": 2}],
    )
    with pytest.raises(openai.APIError, match="broke off"):
        stream(gw)
    assert upstream_calls(gw, "claude-sonnet-4-5") == []  # no prefill of a partial tool call


def test_traffic_returns_to_a_recovered_primary_within_one_reset_interval(
    config: dict[str, Any], mock: str
) -> None:
    config = survive_config(config)
    config["models"]["gpt-4o"]["breaker"] = {"fail_max": 2, "reset_timeout_s": 30}
    clock = FakeClock()
    with run_gateway(config, mock, clock=clock) as gw:
        gw.script("gpt-4o", [], default={"status": 503})
        served = []
        for _ in range(6):  # down for a while, requests arriving throughout
            served.append(stream(gw)[0] == WHOLE)
            clock.advance(5)
        assert all(served)
        gw.script("gpt-4o", [])  # healthy again
        clock.advance(30)  # one reset interval
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY_RESEARCH, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, stream=True
        )
        assert raw.headers["x-spendgate-model"] == "gpt-4o"  # the half-open trial: real
        list(raw.parse())
        text, _ = stream(gw)
        assert text == WHOLE and upstream_calls(gw, "gpt-4o")[-1]["status"] == 200


def test_an_attempt_takes_no_more_than_its_share_when_a_fallback_waits(
    config: dict[str, Any], mock: str
) -> None:
    """With a 30 s first-token limit and a 2 s deadline, a silent primary must leave its
    fallback time: it gets half of what is left, and the fallback answers in time."""
    config = survive_config(config)
    for provider in config["providers"].values():
        provider["first_token_timeout_s"] = 30
    with run_gateway(config, mock) as gw:
        gw.script("gpt-4o", [], default={"hang": True})
        started = time.monotonic()
        text, _ = stream(gw, extra_headers={"x-workflow-id": "wf-s", "x-request-timeout": "2"})
        elapsed = time.monotonic() - started
        assert text == WHOLE and 0.9 < elapsed < 2.0
