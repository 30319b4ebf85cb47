"""Budgets against the truth: the mock provider's record of what it really generated."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.clock import FakeClock
from tests.support.gateway import KEY_OTHER, KEY_RESEARCH, Gateway, run_gateway

MESSAGES = [{"role": "user", "content": "hi"}]
PROMPT_TOKENS = 7  # "hi" is 1 token, +3 per message, +3 priming
PRICE = {"input_per_mtok": 1000, "output_per_mtok": 1000}  # $0.001 per token
TOKEN_USD = Decimal("0.001")


def priced(config: dict[str, Any]) -> dict[str, Any]:
    config["models"]["gpt-4o-mini"]["price"] = PRICE
    config["auth"]["keys"][1]["models"] = None
    return config


def truth_usd(gw: Gateway, model: str = "gpt-4o-mini") -> Decimal:
    records = [r for r in gw.mock_stats()["requests"] if r["model"] == model]
    tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in records)
    return tokens * TOKEN_USD


def workflow(gw: Gateway, wf: str, key: str = KEY_RESEARCH) -> httpx.Response:
    return httpx.get(f"{gw.url}/workflows/{wf}", headers={"authorization": f"Bearer {key}"})


def settled(gw: Gateway, wf: str, calls: int) -> dict[str, Any]:
    """Poll until the gateway settled ``calls`` calls (settlement follows a cut stream)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body: dict[str, Any] = workflow(gw, wf).json()
        if body["calls"] >= calls and body["reserved_usd"] == "0.000000":
            return body
        time.sleep(0.05)
    raise AssertionError(f"workflow {wf} not settled: {body}")


async def storm(
    gw: Gateway, n: int, parallel: int, headers: dict[str, str], stream: bool
) -> list[int]:
    limit = asyncio.Semaphore(parallel)
    async with httpx.AsyncClient(
        base_url=gw.url, timeout=30, headers={"authorization": f"Bearer {KEY_RESEARCH}", **headers}
    ) as client:

        async def one() -> int:
            async with limit:
                body = {
                    "model": "gpt-4o-mini",
                    "messages": MESSAGES,
                    "max_tokens": 20,
                    "stream": stream,
                }
                r = await client.post("/v1/chat/completions", json=body)
                await r.aread()
                return r.status_code

        return await asyncio.gather(*[one() for _ in range(n)])


@pytest.mark.parametrize("stream", [False, True])
def test_concurrent_requests_never_exceed_the_cap(
    config: dict[str, Any], mock: str, stream: bool
) -> None:
    with run_gateway(priced(config), mock) as gw:
        gw.script("gpt-4o-mini", [], default={"delay_s": 0.05})
        headers = {"x-workflow-id": "wf-storm", "x-workflow-budget-usd": "0.15"}
        statuses = asyncio.run(storm(gw, 40, 16, headers, stream))
        # worst case per call = 7 + 20 tokens = $0.027: the cap affords exactly five
        assert statuses.count(200) == 5 and statuses.count(402) == 35
        truth = truth_usd(gw)
        assert truth <= Decimal("0.15")
        state = settled(gw, "wf-storm", 5)
        assert Decimal(state["spent_usd"]) == truth == Decimal("0.135")


def test_402_body_and_headers(config: dict[str, Any], mock: str) -> None:
    with run_gateway(priced(config), mock) as gw, gw.client() as c:
        r = c.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
            headers={"x-workflow-id": "wf-small", "x-workflow-budget-usd": "0.01"},
        )
        assert r.status_code == 402 and r.headers["x-should-retry"] == "false"
        error = r.json()["error"]
        assert error["code"] == "budget_exceeded" and "nothing was sent" in error["message"]
        assert gw.mock_stats()["requests"] == []


def test_response_headers_carry_cost_and_workflow_spend(config: dict[str, Any], mock: str) -> None:
    with run_gateway(priced(config), mock) as gw, gw.client() as c:
        headers = {"x-workflow-id": "wf-h", "x-workflow-budget-usd": "1"}
        body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20}
        r = c.post("/v1/chat/completions", json=body, headers=headers)
        assert r.headers["x-spendgate-cost-usd"] == "0.027000"
        assert r.headers["x-workflow-spent-usd"] == "0.027000"
        assert r.headers["x-workflow-remaining-usd"] == "0.973000"


def test_cap_can_be_lowered_never_raised_and_is_scoped_to_the_key(
    config: dict[str, Any], mock: str
) -> None:
    with run_gateway(priced(config), mock) as gw:

        def call(key: str, cap: str) -> httpx.Response:
            with gw.client(key) as c:
                return c.post(
                    "/v1/chat/completions",
                    json={"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20},
                    headers={"x-workflow-id": "wf-cap", "x-workflow-budget-usd": cap},
                )

        assert call(KEY_RESEARCH, "1.00").status_code == 200
        assert call(KEY_RESEARCH, "5.00").status_code == 200
        assert workflow(gw, "wf-cap").json()["budget_usd"] == "1.000000"
        assert call(KEY_RESEARCH, "0.50").status_code == 200
        assert workflow(gw, "wf-cap").json()["budget_usd"] == "0.500000"
        assert workflow(gw, "wf-cap", KEY_OTHER).status_code == 404
        assert call(KEY_OTHER, "9.00").status_code == 200
        assert workflow(gw, "wf-cap", KEY_OTHER).json()["spent_usd"] == "0.027000"
        assert workflow(gw, "wf-cap").json()["spent_usd"] == "0.081000"


def test_admin_reads_any_workflow_and_raises_its_cap(config: dict[str, Any], mock: str) -> None:
    from tests.support.gateway import ADMIN_KEY

    with run_gateway(priced(config), mock) as gw:
        with gw.client() as c:
            c.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": MESSAGES},
                headers={"x-workflow-id": "wf-a", "x-workflow-budget-usd": "0.5"},
            )
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        url = f"{gw.url}/admin/workflows/research/wf-a"
        assert httpx.get(url, headers=admin).json()["budget_usd"] == "0.500000"
        r = httpx.patch(url, headers=admin, json={"budget_usd": "3"})
        assert r.status_code == 200 and r.json()["budget_usd"] == "3.000000"
        assert (
            httpx.get(url, headers={"authorization": f"Bearer {KEY_RESEARCH}"}).status_code == 401
        )


def test_complete_and_stalled_listing(config: dict[str, Any], mock: str) -> None:
    from tests.support.gateway import ADMIN_KEY

    wall = FakeClock(time.time())
    with run_gateway(priced(config), mock, wall=wall) as gw, gw.client() as c:
        for wf in ("wf-done", "wf-stuck"):
            c.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": MESSAGES},
                headers={"x-workflow-id": wf, "x-workflow-step": "plan"},
            )
        done = c.post("/workflows/wf-done/complete").json()
        assert done["status"] == "completed" and done["current_step"] == "plan"
        wall.advance(gw.runtime.rules.workflows.stall_after_s + 1)
        listed = httpx.get(
            f"{gw.url}/admin/workflows?status=stalled",
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
        ).json()
        assert [w["id"] for w in listed["workflows"]] == ["wf-stuck"]
        assert c.get("/workflows/wf-stuck").json()["status"] == "stalled"


def test_spend_survives_a_restart(config: dict[str, Any], mock: str) -> None:
    config = priced(config)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20}
    headers = {"x-workflow-id": "wf-durable", "x-workflow-budget-usd": "1"}
    with run_gateway(config, mock) as gw, gw.client() as c:
        assert c.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
    with run_gateway(config, mock) as gw:
        state = workflow(gw, "wf-durable").json()
        assert state["spent_usd"] == "0.027000" and state["calls"] == 1


def test_embeddings_are_accounted(config: dict[str, Any], mock: str) -> None:
    config["models"]["embed"]["price"] = {"input_per_mtok": 1000, "output_per_mtok": 0}
    with run_gateway(config, mock) as gw, gw.client() as c:
        r = c.post(
            "/v1/embeddings",
            json={"model": "embed", "input": ["hello world", "hi"]},
            headers={"x-workflow-id": "wf-emb"},
        )
        assert r.status_code == 200 and len(r.json()["data"]) == 2
        [record] = gw.mock_stats()["requests"]
        assert Decimal(r.headers["x-spendgate-cost-usd"]) == record["prompt_tokens"] * TOKEN_USD
        assert workflow(gw, "wf-emb").json()["tokens"]["input"] == record["prompt_tokens"]


def test_crashed_holders_reservation_expires(
    config: dict[str, Any], mock: str, tmp_path: Path
) -> None:
    """A hold whose replica died is counted (worst case) once its lease runs out."""
    import yaml

    from tests.support.gateway import ENV
    from tests.support.process import spendgate

    config = priced(config)
    config["defaults"].update(lease_margin_s=1, drain_timeout_s=1)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20}
    headers = {
        "authorization": f"Bearer {KEY_RESEARCH}",
        "x-workflow-id": "wf-crash",
        "x-workflow-budget-usd": "1",
        "x-request-timeout": "5",
    }
    httpx.post(f"{mock}/_mock/script", json={"model": "gpt-4o-mini", "steps": [{"hang": True}]})
    with spendgate(["serve", "--config", str(path)], ENV) as (proc, url):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=1)
        deadline = time.monotonic() + 10  # a loaded machine: the call may still be on its way
        while not httpx.get(f"{mock}/_mock/stats").json()["requests"]:
            assert time.monotonic() < deadline, "the call never reached the provider"
            time.sleep(0.02)
        proc.kill()  # the hold is written before the call is sent
        proc.wait()
    wall = FakeClock(time.time() + 5 + 1 + 1 + 1)  # past the hold's lease
    with run_gateway(config, mock, wall=wall) as gw:
        # Reading the status counts the expired hold: no new request is needed.
        state = workflow(gw, "wf-crash").json()
        held = Decimal(state["expired_holds_usd"])
        assert state["expired_holds"] == 1 and state["reserved_usd"] == "0.000000"
        assert Decimal(state["spent_usd"]) == held >= Decimal("0.027")  # prompt + max_tokens
        with gw.client() as c:
            r = c.post("/v1/chat/completions", json=body, headers=headers)
        assert r.status_code == 200
        state = workflow(gw, "wf-crash").json()
        # the lost call counted at what it held, plus this call's real cost
        assert Decimal(state["spent_usd"]) == held + Decimal("0.027")


def test_worst_case_counts_every_choice(config: dict[str, Any], mock: str) -> None:
    """n=3 choices of up to 20 tokens may bill 60: a cap for one choice refuses it."""
    with run_gateway(priced(config), mock) as gw, gw.client() as c:
        headers = {"x-workflow-id": "wf-n", "x-workflow-budget-usd": "0.05"}
        body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20}
        assert (
            c.post("/v1/chat/completions", json={**body, "n": 3}, headers=headers).status_code
            == 402
        )
        assert c.post("/v1/chat/completions", json=body, headers=headers).status_code == 200


def test_usage_reported_on_an_error_is_charged(config: dict[str, Any], mock: str) -> None:
    with run_gateway(priced(config), mock) as gw, gw.client() as c:
        gw.script("gpt-4o-mini", [{"status": 400, "include_usage_on_error": True}])
        r = c.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
            headers={"x-workflow-id": "wf-err"},
        )
        assert r.status_code == 400
        [record] = gw.mock_stats()["requests"]
        usage = r.json()["usage"]
        charged = (usage["prompt_tokens"] + usage.get("completion_tokens", 0)) * TOKEN_USD
        assert charged > 0
        assert Decimal(workflow(gw, "wf-err").json()["spent_usd"]) == charged
        assert record["model"] == "gpt-4o-mini"
