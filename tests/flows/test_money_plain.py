"""Money truth for plain (non-streaming) answers: a provider bills the whole answer of
a call the gateway gave up on, so the ledger must too."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.support.gateway import KEY_RESEARCH, Gateway, run_gateway
from tests.support.ledger import TOKEN_USD, flat_priced, records, settled, spent, status, truth_usd

MESSAGES = [{"role": "user", "content": "hi"}]
BODY = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20}


def post(gw: Gateway, workflow: str, *, body: Any = None, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/v1/chat/completions",
        json=body or BODY,
        headers={"authorization": f"Bearer {KEY_RESEARCH}", "x-workflow-id": workflow, **headers},
        timeout=30,
    )


@pytest.fixture
def gw(config: dict[str, Any], mock: str) -> Any:
    with run_gateway(flat_priced(config), mock) as gateway:
        yield gateway


def test_an_answer_abandoned_at_the_deadline_is_read_to_its_end(gw: Gateway) -> None:
    gw.script("gpt-4o-mini", [{"delay_s": 0.6}])
    r = post(gw, "wf-drain", **{"x-request-timeout": "0.2"})
    assert r.status_code == 504
    state = settled(gw.url, "wf-drain", 1)
    [record] = records(gw.mock_url)
    assert record["outcome"] == "ok" and record["completion_tokens"] == 20
    assert spent(state) == truth_usd(gw.mock_url) == 27 * TOKEN_USD


def test_a_drain_that_runs_out_is_charged_the_worst_case(config: dict[str, Any], mock: str) -> None:
    config = flat_priced(config)
    config["defaults"]["drain_timeout_s"] = 0.1
    with run_gateway(config, mock) as gw:
        gw.script("gpt-4o-mini", [{"delay_s": 0.8}])
        r = post(gw, "wf-lost", **{"x-request-timeout": "0.2"})
        assert r.status_code == 504
        state = settled(gw.url, "wf-lost", 1)
        [record] = records(gw.mock_url)
        # The provider noticed the client leave and billed the whole answer anyway.
        assert record["outcome"] == "abandoned" and record["completion_tokens"] == 20
        truth = truth_usd(gw.mock_url)
        assert spent(state) >= truth
        assert state["partial_streams"] == 1  # a charge that is not the provider's word


def test_abandoned_answers_never_take_a_workflow_past_its_cap(gw: Gateway) -> None:
    """Each abandoned call is billed in full: ten of them used to reach 2.2x the cap."""
    gw.script("gpt-4o-mini", [], default={"delay_s": 0.3})
    cap = Decimal("0.100")  # a call costs $0.027 in truth
    statuses = []
    for _ in range(10):
        r = post(gw, "wf-cap", **{"x-request-timeout": "0.1", "x-workflow-budget-usd": str(cap)})
        statuses.append(r.status_code)
    assert 504 in statuses and 402 in statuses
    calls = len(records(gw.mock_url))
    state = settled(gw.url, "wf-cap", calls)
    truth = truth_usd(gw.mock_url)
    assert truth <= cap
    assert spent(state) == truth


def test_an_answer_cut_mid_body_is_charged_its_worst_case(gw: Gateway) -> None:
    """Half an answer arrived and the connection broke: the provider generated (and
    bills) all of it; the retry is billed too."""
    gw.script("gpt-4o-mini", [{"reset_after_chunks": 1}])
    r = post(gw, "wf-cut", **{"x-workflow-budget-usd": "1"})
    assert r.status_code == 200
    state = status(gw.url, "wf-cut")
    assert state["calls"] == 2 and state["reserved_usd"] == "0.000000"
    first, second = records(gw.mock_url)
    assert second["outcome"] == "ok"
    assert first["outcome"] == "reset" and first["completion_tokens"] == 20
    assert spent(state) >= truth_usd(gw.mock_url)


def test_error_answers_are_calls_charged_what_they_report(gw: Gateway) -> None:
    gw.script("gpt-4o-mini", [{"status": 500}, {"status": 503}])
    r = post(gw, "wf-5xx")
    assert r.status_code == 200
    state = status(gw.url, "wf-5xx")
    assert state["calls"] == 3 and state["retries"] == 2
    assert spent(state) == truth_usd(gw.mock_url) == 27 * TOKEN_USD


def test_a_provider_that_cannot_be_reached_is_not_a_call(config: dict[str, Any], mock: str) -> None:
    config = flat_priced(config)
    config["providers"]["mock-openai"]["base_url"] = "http://127.0.0.1:9/v1"  # discard port
    with run_gateway(config, mock) as gw:
        r = post(gw, "wf-down")
        assert r.status_code == 502
        state = status(gw.url, "wf-down")
        assert state["calls"] == 0 and spent(state) == 0
