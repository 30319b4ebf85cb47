"""Workflow guardrails over real sockets: a whole-workflow deadline, a call cap, the loop
guard, the kill switch (also across replicas), heartbeats, outcomes, cost per kind."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.support.clock import FakeClock
from tests.support.gateway import ADMIN_KEY, KEY_RESEARCH, Gateway, run_gateway
from tests.support.ledger import (
    CUT_ALLOWANCE_USD,
    flat_priced,
    records,
    settled,
    spent,
    status,
    truth_usd,
)
from tests.support.metrics import delta, scrape
from tests.support.redis_server import RedisServer

MESSAGES = [{"role": "user", "content": "hi"}]
AUTH = {"authorization": f"Bearer {KEY_RESEARCH}"}
BODY = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20}


def chat(gw: Gateway, workflow: str, body: Any = None, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/v1/chat/completions",
        json=body or BODY,
        headers={**AUTH, "x-workflow-id": workflow, **headers},
        timeout=30,
    )


def refused(r: httpx.Response, code: str) -> str:
    assert r.status_code == 403, r.text
    assert r.headers["x-should-retry"] == "false"
    error = r.json()["error"]
    assert error["code"] == code
    message: str = error["message"]
    return message


def test_a_workflow_past_its_timeout_is_refused_with_nothing_sent(
    config: dict[str, Any], mock: str
) -> None:
    wall = FakeClock(time.time())
    with run_gateway(flat_priced(config), mock, wall=wall) as gw:
        assert chat(gw, "wf-t", **{"x-workflow-timeout-s": "2"}).status_code == 200
        assert chat(gw, "wf-t", **{"x-workflow-timeout-s": "60"}).status_code == 200  # lower-only
        wall.advance(2.5)
        message = refused(chat(gw, "wf-t"), "workflow_expired")
        assert "X-Workflow-Timeout-S of 2 s" in message
        assert len(records(mock)) == 2
        limits = status(gw.url, "wf-t")["limits"]
        assert limits["deadline"]["seconds_left"] == 0


def test_a_request_never_outlives_its_workflow(config: dict[str, Any], mock: str) -> None:
    wall = FakeClock(time.time())
    with run_gateway(flat_priced(config), mock, wall=wall) as gw:
        assert chat(gw, "wf-d", **{"x-workflow-timeout-s": "10"}).status_code == 200
        wall.advance(9)  # one second left of the workflow
        gw.script("gpt-4o-mini", [{"delay_s": 3}])
        started = time.monotonic()
        r = chat(gw, "wf-d", **{"x-request-timeout": "30"})
        assert r.status_code == 504 and time.monotonic() - started < 2.5


def test_the_call_cap_counts_requests_not_attempts(config: dict[str, Any], mock: str) -> None:
    with run_gateway(flat_priced(config), mock) as gw:
        gw.script("gpt-4o-mini", [{"status": 500}])  # the first call needs a retry
        for _ in range(3):
            assert chat(gw, "wf-c", **{"x-workflow-max-calls": "3"}).status_code == 200
        message = refused(chat(gw, "wf-c"), "workflow_call_limit")
        assert "X-Workflow-Max-Calls of 3" in message
        state = status(gw.url, "wf-c")
        assert state["requests"] == 3 and state["calls"] == 4  # attempts, the retry in
        assert state["limits"]["calls"] == {"limit": 3, "left": 0}


def test_the_loop_guard_stops_a_loop_but_never_replays(config: dict[str, Any], mock: str) -> None:
    config["workflows"] = {"max_identical_calls": 3}
    with run_gateway(flat_priced(config), mock) as gw:
        for _ in range(3):
            assert chat(gw, "wf-loop").status_code == 200
        assert "loop guard allows 3" in refused(chat(gw, "wf-loop"), "loop_detected")
        other = {**BODY, "messages": [{"role": "user", "content": "something else"}]}
        assert chat(gw, "wf-loop", other).status_code == 200  # a different request is fine
        for _ in range(6):  # the same request with an Idempotency-Key: replays, no loop
            r = chat(gw, "wf-idem", **{"idempotency-key": "step-1"})
            assert r.status_code == 200
        assert len(records(mock)) == 3 + 1 + 1  # the loop, the other one, one idempotent


def _streams(gw: Gateway, n: int, workflow: str) -> list[tuple[str, float]]:
    """Start ``n`` slow streams of one workflow; each returns (last data line, when)."""

    async def one(client: httpx.AsyncClient, i: int) -> tuple[str, float]:
        messages = [{"role": "user", "content": f"part {i}"}]  # distinct: not a loop
        body = {"model": "gpt-4o-mini", "messages": messages, "stream": True}
        headers = {**AUTH, "x-workflow-id": workflow}
        last = ""
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    last = line
        return last, time.monotonic()

    async def run() -> list[tuple[str, float]]:
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
            return await asyncio.gather(*[one(client, i) for i in range(n)])

    return asyncio.run(run())


def _cancel_when_streaming(url: str, mock: str, n: int, workflow: str) -> float:
    deadline = time.monotonic() + 10
    while sum(r["chunks_sent"] > 1 for r in records(mock)) < n:
        assert time.monotonic() < deadline, "the streams did not start"
        time.sleep(0.02)
    r = httpx.post(f"{url}/workflows/{workflow}/cancel", headers=AUTH, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    return time.monotonic()


def _cancel_scenario(streamer: Gateway, canceller: Gateway, mock: str) -> None:
    import threading

    streamer.script("gpt-4o-mini", [], default={"chunk_delay_s": 0.05, "completion_tokens": 400})
    when: list[float] = []
    thread = threading.Thread(
        target=lambda: when.append(_cancel_when_streaming(canceller.url, mock, 10, "wf-kill"))
    )
    thread.start()
    ends = _streams(streamer, 10, "wf-kill")
    thread.join()
    assert all("workflow_cancelled" in last for last, _ in ends), ends
    assert max(at for _, at in ends) - when[0] < 1.0  # every stream ended within a second
    assert all(r["outcome"] == "cancelled" and r["completion_tokens"] < 400 for r in records(mock))
    state = settled(streamer.url, "wf-kill", 10)
    truth = truth_usd(mock)
    # all it sent was counted, and each cut stream the allowance for what the mock may
    # have generated between the stop and its noticing it
    assert truth <= spent(state) <= truth + 10 * CUT_ALLOWANCE_USD
    assert refused(chat(streamer, "wf-kill"), "workflow_cancelled")


def test_the_kill_switch_cuts_every_stream_of_the_workflow(
    config: dict[str, Any], mock: str
) -> None:
    with run_gateway(flat_priced(config), mock) as gw:
        _cancel_scenario(gw, gw, mock)


def test_the_kill_switch_reaches_another_replica_through_redis(
    config: dict[str, Any], mock: str, own_redis_server: RedisServer
) -> None:
    config = flat_priced(config)
    config["store"] = own_redis_server.url
    with run_gateway(config, mock) as a, run_gateway(config, mock) as b:
        _cancel_scenario(a, b, mock)


def test_heartbeats_keep_a_busy_workflow_from_being_stalled(
    config: dict[str, Any], mock: str
) -> None:
    wall = FakeClock(time.time())
    config["workflows"] = {"stall_after_s": 60}
    with run_gateway(flat_priced(config), mock, wall=wall) as gw:
        for wf in ("wf-busy", "wf-quiet"):
            assert chat(gw, wf).status_code == 200
        for minute in range(5):  # long tool calls, no model call, a heartbeat every 30 s
            wall.advance(30)
            beat = {"step": f"tool-{minute}", "progress": 20 * minute}
            r = httpx.post(f"{gw.url}/workflows/wf-busy/heartbeat", json=beat, headers=AUTH)
            assert r.status_code == 200 and r.json()["current_step"] == f"tool-{minute}"
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        stalled = httpx.get(f"{gw.url}/admin/workflows?status=stalled", headers=admin).json()
        assert [w["id"] for w in stalled["workflows"]] == ["wf-quiet"]
        mine = httpx.get(f"{gw.url}/workflows?status=stalled", headers=AUTH).json()
        assert [w["id"] for w in mine["workflows"]] == ["wf-quiet"]
        busy = status(gw.url, "wf-busy")
        assert busy["status"] == "running" and busy["progress"] == 80


def test_outcomes_and_paged_listing(config: dict[str, Any], mock: str) -> None:
    with run_gateway(flat_priced(config), mock) as gw:
        for i in range(5):
            assert chat(gw, f"wf-page-{i}").status_code == 200
        done = {"status": "failed", "error": "the tool crashed"}
        r = httpx.post(f"{gw.url}/workflows/wf-page-1/complete", json=done, headers=AUTH)
        assert r.json()["outcome"] == "failed" and r.json()["error"] == "the tool crashed"
        seen, cursor = [], None
        while True:
            query = {"status": "running", "limit": "2", **({"after": cursor} if cursor else {})}
            page = httpx.get(f"{gw.url}/workflows", params=query, headers=AUTH).json()
            seen += [w["id"] for w in page["workflows"]]
            cursor = page["next"]
            if cursor is None:
                break
        assert seen == ["wf-page-0", "wf-page-2", "wf-page-3", "wf-page-4"]
        completed = httpx.get(f"{gw.url}/workflows?status=completed", headers=AUTH).json()
        assert [w["id"] for w in completed["workflows"]] == ["wf-page-1"]


@pytest.mark.parametrize("stop", [False, True])
def test_cost_per_kind_and_a_running_anomaly_is_flagged(
    config: dict[str, Any], mock: str, stop: bool
) -> None:
    config["workflows"] = {"names": ["research", "triage"], "cost_anomaly_stop": stop}
    with run_gateway(flat_priced(config), mock) as gw:
        before = scrape(gw)
        for kind in ("research", "triage"):
            for i in range(3):
                wf = f"wf-{kind}-{i}"
                assert chat(gw, wf, **{"x-workflow-name": kind}).status_code == 200
                httpx.post(f"{gw.url}/workflows/{wf}/complete", headers=AUTH).raise_for_status()
        after = scrape(gw)
        for kind in ("research", "triage"):
            assert delta(before, after, "spendgate_workflow_cost_usd_count", workflow=kind) == 3
        # a research run at four times its kind's median ($0.027): flagged while running
        for _ in range(4):
            r = chat(gw, "wf-runaway", **{"x-workflow-name": "research"})
        state = status(gw.url, "wf-runaway")
        assert state["cost_anomaly"] == {"kind_median_usd": "0.027000", "factor": 3.0}
        assert Decimal(state["spent_usd"]) == 4 * Decimal("0.027")
        if stop:
            refused(chat(gw, "wf-runaway", **{"x-workflow-name": "research"}), "workflow_cancelled")
            stopped = delta(
                before, scrape(gw), "spendgate_guardrail_rejections_total", reason="cost_anomaly"
            )
            assert stopped == 1
        else:
            assert r.status_code == 200
