"""Two gateway processes sharing one Redis: one budget, one truth."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from itertools import cycle
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.flows.test_budgets import MESSAGES, TOKEN_USD, priced
from tests.support.gateway import ENV, KEY_RESEARCH, run_gateway
from tests.support.process import spendgate
from tests.support.redis_server import RedisServer


async def storm(urls: list[str], n: int, parallel: int, headers: dict[str, str]) -> list[int]:
    limit = asyncio.Semaphore(parallel)
    async with httpx.AsyncClient(
        timeout=30, headers={"authorization": f"Bearer {KEY_RESEARCH}", **headers}
    ) as client:

        async def one(url: str) -> int:
            async with limit:
                r = await client.post(
                    f"{url}/v1/chat/completions",
                    json={"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20},
                )
                return r.status_code

        pick = cycle(urls)
        return await asyncio.gather(*[one(next(pick)) for _ in range(n)])


def test_two_replicas_share_one_cap(
    config: dict[str, Any], mock: str, tmp_path: Path, own_redis_server: RedisServer
) -> None:
    config = priced(config)
    config["store"] = own_redis_server.url
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    httpx.post(
        f"{mock}/_mock/script",
        json={"model": "gpt-4o-mini", "steps": [], "default": {"delay_s": 0.05}},
    )
    with (
        spendgate(["serve", "--config", str(path)], ENV) as (_, a),
        spendgate(["serve", "--config", str(path)], ENV) as (_, b),
    ):
        headers = {"x-workflow-id": "wf-shared", "x-workflow-budget-usd": "0.15"}
        statuses = asyncio.run(storm([a, b], 40, 16, headers))
        assert statuses.count(200) == 5 and statuses.count(402) == 35
        stats = httpx.get(f"{mock}/_mock/stats").json()["requests"]
        truth = sum(r["prompt_tokens"] + r["completion_tokens"] for r in stats) * TOKEN_USD
        assert truth <= Decimal("0.15")
        for url in (a, b):
            state = httpx.get(
                f"{url}/workflows/wf-shared", headers={"authorization": f"Bearer {KEY_RESEARCH}"}
            ).json()
            assert Decimal(state["spent_usd"]) == truth and state["calls"] == 5


def test_redis_unreachable_fails_closed(
    config: dict[str, Any], mock: str, own_redis_server: RedisServer
) -> None:
    config = priced(config)
    config["store"] = own_redis_server.url
    with run_gateway(config, mock) as gw, gw.client() as c:
        body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20}
        headers = {"x-workflow-id": "wf-r", "x-workflow-budget-usd": "1"}
        assert c.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
        own_redis_server.pause()
        try:
            started = time.monotonic()
            r = c.post("/v1/chat/completions", json=body, headers=headers)
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
            assert time.monotonic() - started < 5
            assert c.get("/readyz").status_code == 503
            assert len(gw.mock_stats()["requests"]) == 1  # nothing sent upstream
            # No workflow and no key budget: nothing to enforce, served without the store.
            assert c.post("/v1/chat/completions", json=body).status_code == 200
        finally:
            own_redis_server.resume()
        assert c.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
