"""Idempotency-Key over real sockets: a retried or restarted step is never paid twice."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.flows.test_budgets import MESSAGES, priced, workflow
from tests.support.clock import FakeClock
from tests.support.gateway import ENV, KEY_OTHER, KEY_RESEARCH, Gateway, run_gateway
from tests.support.process import spendgate
from tests.support.redis_server import RedisServer

BODY = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20}


def upstream_calls(gw: Gateway | str) -> int:
    url = gw.mock_url if isinstance(gw, Gateway) else gw
    return len(httpx.get(f"{url}/_mock/stats").json()["requests"])


def post(
    gw: Gateway, key: str, body: dict[str, Any] = BODY, api_key: str = KEY_RESEARCH, **headers: str
) -> httpx.Response:
    with gw.client(api_key) as c:
        return c.post(
            "/v1/chat/completions", json=body, headers={"idempotency-key": key, **headers}
        )


def test_same_key_twice_is_one_call_and_costs_nothing_more(
    config: dict[str, Any], mock: str
) -> None:
    with run_gateway(priced(config), mock) as gw:
        first = post(gw, "step-1", **{"x-workflow-id": "wf-i"})
        spent = workflow(gw, "wf-i").json()["spent_usd"]
        second = post(gw, "step-1", **{"x-workflow-id": "wf-i"})
        assert upstream_calls(gw) == 1
        assert second.content == first.content and second.status_code == 200
        assert second.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert second.headers["x-spendgate-cost-usd"] == "0.000000"
        assert workflow(gw, "wf-i").json()["spent_usd"] == spent


def test_streaming_replays_as_a_stream(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY_RESEARCH, max_retries=0)

    def run() -> str:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_headers={"idempotency-key": "stream-1"},
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert run() == run() and len(run().split()) == 20
    assert upstream_calls(gateway) == 1


def test_same_key_different_body_is_422(gateway: Gateway) -> None:
    assert post(gateway, "k").status_code == 200
    r = post(gateway, "k", {**BODY, "temperature": 0.1})
    assert r.status_code == 422 and r.json()["error"]["code"] == "idempotency_key_reused"
    assert upstream_calls(gateway) == 1


def test_quoted_and_bare_keys_are_one_key(gateway: Gateway) -> None:
    post(gateway, "abc")
    assert post(gateway, '"abc"').headers["idempotent-replayed"] == "true"
    assert post(gateway, "x" * 256).status_code == 400
    with gateway.client() as c:
        r = c.post(
            "/v1/chat/completions", json=BODY, headers={"idempotency-key": "caf\u00e9".encode()}
        )
    assert r.status_code == 400 and "printable ASCII" in r.json()["error"]["message"]


def test_keys_are_scoped_to_the_gateway_key(config: dict[str, Any], mock: str) -> None:
    with run_gateway(priced(config), mock) as gw:
        a = post(gw, "shared")
        b = post(gw, "shared", api_key=KEY_OTHER)
        assert "idempotent-replayed" not in b.headers and a.json()["id"] != b.json()["id"]
        assert upstream_calls(gw) == 2


def test_six_concurrent_duplicates_make_one_call(gateway: Gateway) -> None:
    gateway.script("gpt-4o-mini", [{"delay_s": 1.0}])
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY_RESEARCH)  # SDK defaults

    def one(_: int) -> str:
        completion = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            max_tokens=20,
            extra_headers={"idempotency-key": "together"},
        )
        return completion.model_dump_json()

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(one, range(6)))
    assert len(set(answers)) == 1
    assert upstream_calls(gateway) == 1


def test_failures_are_not_stored(gateway: Gateway) -> None:
    gateway.script("gpt-4o-mini", [{"status": 503}] * 3)
    assert post(gateway, "flaky").status_code == 502
    r = post(gateway, "flaky")
    assert r.status_code == 200 and "idempotent-replayed" not in r.headers


def test_provider_client_errors_are_stored(gateway: Gateway) -> None:
    gateway.script("gpt-4o-mini", [{"status": 400}])
    first = post(gateway, "bad")
    second = post(gateway, "bad")
    assert first.status_code == second.status_code == 400
    assert second.headers["idempotent-replayed"] == "true" and upstream_calls(gateway) == 1


def test_answers_over_the_size_limit_are_not_stored(config: dict[str, Any], mock: str) -> None:
    config["idempotency"] = {"max_record_bytes": 1024}
    with run_gateway(config, mock) as gw:
        gw.script("gpt-4o-mini", [], default={"completion_tokens": 400})
        body = {**BODY, "max_tokens": 400}
        post(gw, "big", body)
        assert "idempotent-replayed" not in post(gw, "big", body).headers
        assert upstream_calls(gw) == 2


def test_derived_keys_from_workflow_and_step(config: dict[str, Any], mock: str) -> None:
    config["idempotency"] = {"derive_from_workflow_step": True}
    with run_gateway(config, mock) as gw, gw.client() as c:
        headers = {"x-workflow-id": "wf-d", "x-workflow-step": "summarise"}
        first = c.post("/v1/chat/completions", json=BODY, headers=headers)
        second = c.post("/v1/chat/completions", json=BODY, headers=headers)
        assert second.headers["idempotent-replayed"] == "true"
        assert second.content == first.content and upstream_calls(gw) == 1


def write_config(config: dict[str, Any], tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def duplicates(urls: list[str], n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(
        timeout=30, headers={"authorization": f"Bearer {KEY_RESEARCH}", "idempotency-key": "cross"}
    ) as client:
        pick = cycle(urls)
        return await asyncio.gather(
            *[client.post(f"{next(pick)}/v1/chat/completions", json=BODY) for _ in range(n)]
        )


def test_two_replicas_on_redis_share_records(
    config: dict[str, Any], mock: str, tmp_path: Path, own_redis_server: RedisServer
) -> None:
    config["store"] = own_redis_server.url
    path = write_config(config, tmp_path)
    with (
        spendgate(["serve", "--config", str(path)], ENV) as (_, a),
        spendgate(["serve", "--config", str(path)], ENV) as (_, b),
    ):
        headers = {"authorization": f"Bearer {KEY_RESEARCH}", "idempotency-key": "done-on-a"}
        first = httpx.post(f"{a}/v1/chat/completions", json=BODY, headers=headers)
        second = httpx.post(f"{b}/v1/chat/completions", json=BODY, headers=headers)
        assert second.headers["idempotent-replayed"] == "true"
        assert second.content == first.content and upstream_calls(mock) == 1
        httpx.post(
            f"{mock}/_mock/script", json={"model": "gpt-4o-mini", "steps": [{"delay_s": 0.5}]}
        )
        answers = asyncio.run(duplicates([a, b], 6))
        assert {r.status_code for r in answers} == {200}
        assert len({r.content for r in answers}) == 1 and upstream_calls(mock) == 2


def test_a_dead_holder_does_not_lock_the_key(
    config: dict[str, Any], mock: str, tmp_path: Path
) -> None:
    path = write_config(config, tmp_path)
    headers = {
        "authorization": f"Bearer {KEY_RESEARCH}",
        "idempotency-key": "orphan",
        "x-request-timeout": "5",
    }
    httpx.post(f"{mock}/_mock/script", json={"model": "gpt-4o-mini", "steps": [{"hang": True}]})
    with spendgate(["serve", "--config", str(path)], ENV) as (proc, url):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/chat/completions", json=BODY, headers=headers, timeout=1)
        proc.kill()
        proc.wait()
    wall = FakeClock(time.time() + 5 + 30 + 1)  # past the holder's lease
    with run_gateway(config, mock, wall=wall) as gw, gw.client() as c:
        r = c.post("/v1/chat/completions", json=BODY, headers=headers)
        assert r.status_code == 200 and "idempotent-replayed" not in r.headers
        again = c.post("/v1/chat/completions", json=BODY, headers=headers)
        assert again.headers["idempotent-replayed"] == "true"
        assert upstream_calls(gw) == 2  # the dead holder's call, and exactly one more
