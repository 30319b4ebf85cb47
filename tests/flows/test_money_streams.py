"""Money truth for streams: whatever cuts a stream, the ledger is never below what the
provider generated, and never more than the documented bound above it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.support.gateway import KEY_RESEARCH, Gateway, run_gateway
from tests.support.ledger import (
    CUT_ALLOWANCE_USD,
    TOKEN_USD,
    flat_priced,
    records,
    settled,
    spent,
    status,
    truth_usd,
)

MESSAGES = [{"role": "user", "content": "hi"}]
MODELS = ["gpt-4o-mini", "claude-sonnet"]
UPSTREAM = {"gpt-4o-mini": "gpt-4o-mini", "claude-sonnet": "claude-sonnet-4-5"}


@pytest.fixture
def gw(config: dict[str, Any], mock: str) -> Any:
    with run_gateway(flat_priced(config), mock) as gateway:
        yield gateway


def sdk(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY_RESEARCH, max_retries=0)


def read_stream(gw: Gateway, model: str, workflow: str, **body: Any) -> str:
    text = ""
    for chunk in sdk(gw).chat.completions.create(
        model=model,
        messages=body.pop("messages", MESSAGES),
        stream=True,
        extra_headers={"x-workflow-id": workflow, **body.pop("headers", {})},
        **body,
    ):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    return text


def leave_after(
    gw: Gateway, model: str, workflow: str, events: int, *, headers: Any = None, **extra: Any
) -> bool:
    """Read ``events`` content events of a stream, then hang up (False: refused, 402)."""
    body = {"model": model, "messages": MESSAGES, "stream": True, **extra}
    sent = {"authorization": f"Bearer {KEY_RESEARCH}", "x-workflow-id": workflow, **(headers or {})}
    with httpx.stream(
        "POST", f"{gw.url}/v1/chat/completions", json=body, headers=sent, timeout=30
    ) as r:
        if r.status_code == 402:
            return False
        seen = 0
        for line in r.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                seen += 1
            if seen == events:
                return True
    raise AssertionError("the stream ended before the client left")


def test_an_upstream_that_cannot_be_told_to_stop_is_charged_the_allowance(
    config: dict[str, Any], mock: str
) -> None:
    config = flat_priced(config)
    config["providers"]["mock-openai"]["transport"] = "httpx"  # no half-close
    with run_gateway(config, mock) as gw:
        gw.script("gpt-4o-mini", [{"chunk_delay_s": 0.05, "completion_tokens": 200}])
        leave_after(gw, "gpt-4o-mini", "wf-gone", 10)
        state = settled(gw.url, "wf-gone", 1)
    [record] = records(mock)
    assert record["outcome"] == "cancelled" and 10 <= record["completion_tokens"] < 200
    # What it generated but we never saw is unknown: the safe upper bound, the allowance.
    truth = truth_usd(mock)
    assert truth < spent(state) <= truth + CUT_ALLOWANCE_USD


@pytest.mark.parametrize("model", MODELS)
def test_a_stream_reset_mid_way_is_charged_what_arrived(gw: Gateway, model: str) -> None:
    gw.script(UPSTREAM[model], [{"reset_after_chunks": 5}])
    with pytest.raises(openai.APIError):
        read_stream(gw, model, "wf-reset")
    # The error event came after the settle: no waiting, the status is already exact.
    state = status(gw.url, "wf-reset")
    [record] = records(gw.mock_url)
    assert record["outcome"] == "reset" and record["completion_tokens"] == 5
    assert spent(state) == truth_usd(gw.mock_url)
    assert state["partial_streams"] == 1 and state["reserved_usd"] == "0.000000"


@pytest.mark.parametrize("model", MODELS)
def test_a_client_that_leaves_is_charged_what_was_generated(gw: Gateway, model: str) -> None:
    gw.script(UPSTREAM[model], [{"chunk_delay_s": 0.05, "completion_tokens": 200}])
    leave_after(gw, model, "wf-gone", 10)
    state = settled(gw.url, "wf-gone", 1)
    [record] = records(gw.mock_url)
    assert record["outcome"] == "cancelled" and 10 <= record["completion_tokens"] < 200
    # Told to stop (a half-close), the mock closed: what it sent before it stopped was
    # all counted, and the allowance for what it may have generated and never sent.
    truth = truth_usd(gw.mock_url)
    assert truth <= spent(state) <= truth + CUT_ALLOWANCE_USD


def test_claude_streams_cut_by_their_clients_never_pass_the_cap(gw: Gateway) -> None:
    """Anthropic's message_start says output_tokens 1: taken at its word, every cut
    stream looked almost free and the workflow's real spend went far past its cap."""
    gw.script("claude-sonnet-4-5", [], default={"chunk_delay_s": 0.05, "completion_tokens": 40})
    cap = "0.150"  # a call may cost 7 prompt + 40 output tokens = $0.047
    headers = {"x-workflow-budget-usd": cap}
    served = 0
    while served < 10:
        if not leave_after(gw, "claude-sonnet", "wf-claude", 8, max_tokens=40, headers=headers):
            break
        served += 1
        settled(gw.url, "wf-claude", served)
    state = status(gw.url, "wf-claude")
    truth = truth_usd(gw.mock_url)
    assert 2 <= served < 10
    assert truth <= spent(state) <= truth + served * CUT_ALLOWANCE_USD
    assert spent(state) <= Decimal(cap)


@pytest.mark.parametrize("model", MODELS)
def test_breaks_after_the_200_before_any_content_charge_the_prompt(gw: Gateway, model: str) -> None:
    """The provider processed (and bills) the prompt of every attempt that got its 200."""
    prompt = [{"role": "user", "content": "word " * 2000}]
    gw.script(UPSTREAM[model], [{"reset_after_chunks": 0}] * 3)
    with pytest.raises(openai.APIError):
        read_stream(gw, model, "wf-early", messages=prompt)
    state = status(gw.url, "wf-early")
    attempts = records(gw.mock_url)
    assert len(attempts) == 3 and all(r["prompt_tokens"] > 2000 for r in attempts)
    assert state["calls"] == 3
    truth = truth_usd(gw.mock_url)
    # Claude's message_start already said output_tokens 1: a provisional count is a floor.
    floor = 3 * TOKEN_USD if model == "claude-sonnet" else 0
    assert spent(state) == truth + floor


def test_early_breaks_stop_at_the_cap(gw: Gateway) -> None:
    """Three early breaks of a big prompt under a cap that pays for two: the third
    attempt is refused before it is sent, and the provider's truth stays under the cap."""
    prompt = [{"role": "user", "content": "word " * 2000}]
    gw.script("gpt-4o-mini", [{"reset_after_chunks": 0}] * 3)
    prompt_usd = 2006 * TOKEN_USD
    cap = 2 * prompt_usd + 20 * TOKEN_USD + prompt_usd / 2
    r = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": prompt, "stream": True, "max_tokens": 20},
        headers={
            "authorization": f"Bearer {KEY_RESEARCH}",
            "x-workflow-id": "wf-early-cap",
            "x-workflow-budget-usd": str(cap),
        },
        timeout=30,
    )
    assert r.status_code == 402
    assert len(records(gw.mock_url)) == 2
    assert spent(status(gw.url, "wf-early-cap")) == truth_usd(gw.mock_url) <= cap


def test_the_status_is_exact_the_moment_the_client_has_its_last_byte(gw: Gateway) -> None:
    """Read-your-writes, 100 times in a row, streams and plain answers alternating."""
    client = sdk(gw)
    for i in range(100):
        headers = {"x-workflow-id": "wf-ryw", "x-workflow-budget-usd": "10"}
        step = f"step-{i}"  # each call its own request: not a loop
        if i % 2:
            for _ in client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                max_tokens=20,
                stream=True,
                user=step,
                extra_headers=headers,
            ):
                pass
        else:
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                max_tokens=20,
                user=step,
                extra_headers=headers,
            )
        state = status(gw.url, "wf-ryw")
        assert state["calls"] == i + 1 and state["reserved_usd"] == "0.000000"
        assert spent(state) == (i + 1) * 27 * TOKEN_USD  # 7 prompt + 20 output each
    assert spent(state) == truth_usd(gw.mock_url)
