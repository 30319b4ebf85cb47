"""Two gateway processes on a Redis Cluster under load on capped workflows, while the
master that holds the workflows' tenant is killed (SIGKILL) and the cluster promotes
its replica. Requests in that window succeed or fail closed (503 ``store_unavailable``,
nothing sent upstream); afterwards the spend equals the mock's truth and no cap is
exceeded. Run with ``-s`` to see the figures."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.flows.test_budgets import MESSAGES, TOKEN_USD, priced
from tests.support.gateway import ENV, KEY_RESEARCH
from tests.support.process import spendgate
from tests.support.redis_cluster import RedisClusterServer

WORKFLOWS = 24
# caps from $0.10 to $1.25 (about 3 to 46 calls): some run out before the kill, some in
# the failover window, some after, some never
CAPS_USD = [Decimal("0.10") + Decimal("0.05") * i for i in range(WORKFLOWS)]
PARALLEL = 16
BEFORE_S, AFTER_S = 2.0, 2.0  # load before the kill, and after the cluster healed


@dataclass
class Load:
    urls: list[str]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    results: list[tuple[float, int, str]] = field(default_factory=list)  # (time, status, code)

    async def run(self) -> None:
        headers = {"authorization": f"Bearer {KEY_RESEARCH}"}
        seq = count()
        async with httpx.AsyncClient(timeout=30, headers=headers) as client:
            await asyncio.gather(*(self._worker(client, seq) for _ in range(PARALLEL)))

    async def _worker(self, client: httpx.AsyncClient, seq: count[int]) -> None:
        while not self.stop.is_set():
            n = next(seq)
            r = await client.post(
                f"{self.urls[n % 2]}/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20},
                headers={
                    "x-workflow-id": f"wf-{n % WORKFLOWS}",
                    "x-workflow-budget-usd": str(CAPS_USD[n % WORKFLOWS]),
                },
            )
            code = r.json().get("error", {}).get("code", "") if r.status_code != 200 else ""
            self.results.append((time.monotonic(), r.status_code, code))


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def _wait_settled(urls: list[str], timeout: float = 20.0) -> None:
    """Until neither replica has a settle waiting for the store."""
    deadline = time.monotonic() + timeout
    while any(_metric(url, "spendgate_settles_pending") for url in urls):
        assert time.monotonic() < deadline, "deferred settles never landed"
        time.sleep(0.1)


def _warm_up(urls: list[str]) -> None:
    """One capped request per replica first: the first loads the tokenizer (seconds)."""
    for url in urls:
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20},
            headers={
                "authorization": f"Bearer {KEY_RESEARCH}",
                "x-workflow-id": "warm-up",
                "x-workflow-budget-usd": "1",
            },
            timeout=30,
        )
        assert r.status_code == 200, r.text


async def _scenario(cluster: RedisClusterServer, load: Load) -> tuple[float, float]:
    """Load, then the kill and the cluster's own failover (its replica elected once
    the master is seen failing); the failover window (start, end)."""
    running = asyncio.create_task(load.run())
    await asyncio.sleep(BEFORE_S)
    master = cluster.master_of_key("{research}")
    replica = cluster.replica_of(master)
    killed = time.monotonic()
    master.kill()
    await asyncio.to_thread(cluster.wait_promoted, replica, 30.0)
    await asyncio.to_thread(cluster.wait_healthy, 20.0)
    healed = time.monotonic()
    await asyncio.sleep(AFTER_S)
    load.stop.set()
    await running
    return killed, healed


def test_a_master_killed_under_load_loses_no_money(
    config: dict[str, Any], mock: str, tmp_path: Path
) -> None:
    config = priced(config)
    config["workflows"] = {"max_identical_calls": 0}  # the same body, again and again
    httpx.post(
        f"{mock}/_mock/script",
        json={"model": "gpt-4o-mini", "steps": [], "default": {"delay_s": 0.02}},
    ).raise_for_status()
    with RedisClusterServer() as cluster:
        config["store"] = cluster.url
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        started = time.monotonic()
        with (
            spendgate(["serve", "--config", str(path)], ENV) as (_, a),
            spendgate(["serve", "--config", str(path)], ENV) as (_, b),
        ):
            _warm_up([a, b])
            load = Load([a, b])
            killed, healed = asyncio.run(_scenario(cluster, load))
            _wait_settled([a, b])
            figures = _judge(mock, [a, b], load, killed, healed)
        figures["test_s"] = round(time.monotonic() - started, 1)
        print(f"\ncluster failover: {figures}")


def _judge(mock: str, urls: list[str], load: Load, killed: float, healed: float) -> dict[str, Any]:
    statuses = Counter(status for _, status, _ in load.results)
    codes = Counter(code for _, status, code in load.results if status == 503)
    assert set(statuses) <= {200, 402, 503}, statuses
    assert set(codes) <= {"store_unavailable"}, codes
    upstream = httpx.get(f"{mock}/_mock/stats", timeout=10).json()["requests"][len(urls) :]
    # a request refused (402) or failed closed (503) sent nothing upstream
    assert len(upstream) == statuses[200]
    truth = sum(r["prompt_tokens"] + r["completion_tokens"] for r in upstream) * TOKEN_USD
    auth = {"authorization": f"Bearer {KEY_RESEARCH}"}
    found = [
        httpx.get(f"{urls[i % 2]}/workflows/wf-{i}", headers=auth, timeout=10)
        for i in range(WORKFLOWS)
    ]
    assert {r.status_code for r in found} <= {200, 404}  # 404: every request failed closed
    states = [r.json() for r in found if r.status_code == 200]
    for state in states:
        cap = CAPS_USD[int(state["id"].removeprefix("wf-"))]
        assert Decimal(state["spent_usd"]) <= cap, state
    spent = sum(Decimal(s["spent_usd"]) for s in states)
    assert spent == truth
    assert sum(s["calls"] for s in states) == statuses[200]
    in_window = [r for r in load.results if killed <= r[0] <= healed]
    assert load.results[0][0] < killed and load.results[-1][0] > healed  # load throughout
    return {
        "requests": len(load.results), "ok": statuses[200], "402": statuses[402],
        "503": statuses[503], "window_s": round(healed - killed, 2),
        "window_requests": len(in_window),
        "window_503": sum(1 for r in in_window if r[1] == 503),
        "spent_usd": str(spent), "truth_usd": str(truth),
        "held_usd": str(sum(Decimal(s["reserved_usd"]) for s in states)),
        "orphan_settles": sum(_metric(url, "spendgate_settle_orphans_total") for url in urls),
        "workflows_at_cap": sum(
            1 for s in states
            if Decimal(s["spent_usd"]) + Decimal("0.027") > CAPS_USD[int(s["id"][3:])]
        ),
    }  # fmt: skip
