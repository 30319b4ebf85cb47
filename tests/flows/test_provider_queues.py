"""Load the gateway shapes before the provider has to, over real sockets: a provider's
concurrency cap with a fair queue across keys, its queue timeout, pacing from its own
rate-limit headers, and a slow start after its breaker closes. Timings are counts of
upstream calls (the mock's own record), not wall-clock speed."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.support.clock import FakeClock
from tests.support.gateway import KEY_OTHER, KEY_RESEARCH, Gateway, run_gateway
from tests.support.metrics import delta, scrape


def chat(text: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 5,
    }


def provider(config: dict[str, Any], **settings: Any) -> dict[str, Any]:
    config["providers"]["mock-openai"].update(settings)
    return config


async def send(gw: Gateway, key: str, texts: list[str]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=500)
    async with httpx.AsyncClient(
        base_url=gw.url, timeout=60, headers={"authorization": f"Bearer {key}"}, limits=limits
    ) as client:
        return await asyncio.gather(
            *[client.post("/v1/chat/completions", json=chat(t)) for t in texts]
        )


def upstream_order(gw: Gateway) -> list[str]:
    """The prompt of every call the mock received, in the order it arrived."""
    records = sorted(gw.mock_stats()["requests"], key=lambda r: r["id"])
    return [r["body"]["messages"][0]["content"] for r in records]


def test_a_noisy_key_does_not_starve_another_behind_the_providers_cap(
    config: dict[str, Any], mock: str
) -> None:
    with run_gateway(provider(config, max_inflight=4), mock) as gw:
        gw.script("gpt-4o-mini", [], default={"delay_s": 0.05})
        before = scrape(gw)

        async def both() -> tuple[list[httpx.Response], list[httpx.Response]]:
            noisy = asyncio.ensure_future(send(gw, KEY_RESEARCH, [f"a{i}" for i in range(50)]))
            await asyncio.sleep(0.1)  # the noisy key's 50 are queued first
            quiet = await send(gw, KEY_OTHER, [f"b{i}" for i in range(5)])
            return await noisy, quiet

        noisy, quiet = asyncio.run(both())
        assert all(r.status_code == 200 for r in noisy + quiet)
        stats = gw.mock_stats()
        assert stats["max_concurrency"] <= 4
        order = upstream_order(gw)
        first_b = min(i for i, text in enumerate(order) if text.startswith("b"))
        last_b = max(i for i, text in enumerate(order) if text.startswith("b"))
        # round-robin: after the quiet key's first call, one of its calls goes out for
        # every one of the noisy key's, so its five take at most ~10 upstream places
        assert last_b - first_b <= 10 and last_b < 40
        after = scrape(gw)
        waits = delta(
            before, after, "spendgate_provider_queue_wait_seconds_count", provider="mock-openai"
        )
        assert waits == 55
        assert after[("spendgate_provider_queue_depth", (("provider", "mock-openai"),))] == 0


def test_a_full_queue_past_its_timeout_is_503_provider_busy(
    config: dict[str, Any], mock: str
) -> None:
    config = provider(config, max_inflight=1, queue_timeout_s=0.2)
    with run_gateway(config, mock) as gw:
        gw.script("gpt-4o-mini", [{"delay_s": 1.0}])
        first, second = asyncio.run(send(gw, KEY_RESEARCH, ["x", "y"]))
        codes = sorted([first.status_code, second.status_code])
        assert codes == [200, 503]
        busy = first if first.status_code == 503 else second
        assert busy.json()["error"]["code"] == "provider_busy"
        assert busy.headers["retry-after"] == "1" and "concurrency limit (1 calls)" in busy.text
        assert busy.headers["x-should-retry"] == "true"
        assert len(gw.mock_stats()["requests"]) == 1


def test_the_providers_own_quota_headers_pace_calls_so_it_never_answers_429(
    config: dict[str, Any], mock: str
) -> None:
    with run_gateway(config, mock) as gw:
        httpx.post(f"{mock}/_mock/ratelimit", json={"requests": 3, "window_s": 1.0})
        before = scrape(gw)
        first = asyncio.run(send(gw, KEY_RESEARCH, ["one"]))[0]
        assert first.status_code == 200  # the mock said: 2 left, reset in ~1 s
        answers = asyncio.run(send(gw, KEY_RESEARCH, [f"p{i}" for i in range(6)]))
        assert [r.status_code for r in answers] == [200] * 6
        stats = gw.mock_stats()
        assert stats["rate_limited"] == 0  # the quota was never exceeded: no 429 at all
        assert len(stats["requests"]) == 7
        paced = delta(before, scrape(gw), "spendgate_provider_paced_total", provider="mock-openai")
        assert paced >= 1


def test_after_a_breaker_closes_the_backlog_ramps_up_instead_of_landing_at_once(
    config: dict[str, Any], mock: str
) -> None:
    clock = FakeClock()
    config = provider(config, max_inflight=200)
    config["models"]["gpt-4o-mini"].update(
        {"retry": {"max_attempts": 1}, "breaker": {"fail_max": 1, "reset_timeout_s": 30}}
    )
    with run_gateway(config, mock, clock=clock) as gw:
        gw.script("gpt-4o-mini", [{"status": 500}], default={"delay_s": 0.25})
        assert asyncio.run(send(gw, KEY_RESEARCH, ["fails"]))[0].status_code >= 500  # open
        assert asyncio.run(send(gw, KEY_RESEARCH, ["refused"]))[0].status_code == 503
        clock.advance(31)
        assert asyncio.run(send(gw, KEY_RESEARCH, ["trial"]))[0].status_code == 200  # closed
        httpx.post(f"{mock}/_mock/reset").raise_for_status()  # count the backlog alone
        gw.script("gpt-4o-mini", [], default={"delay_s": 0.25})
        backlog = asyncio.run(send(gw, KEY_RESEARCH, [f"w{i}" for i in range(200)]))
        assert all(r.status_code == 200 for r in backlog)
        records = gw.mock_stats()["requests"]
        first_end = min(r["ended"] for r in records)
        # slow start: 200 / 16 = 12 at first, then one more per call that succeeds
        assert sum(1 for r in records if r["started"] < first_end) <= 12
        assert gw.mock_stats()["max_concurrency"] < 150  # never the whole backlog at once


def test_a_busy_provider_sends_the_call_to_the_fallback_on_another_provider(
    config: dict[str, Any], mock: str
) -> None:
    config = provider(config, max_inflight=1, queue_timeout_s=0.2)
    with run_gateway(config, mock) as gw:
        gw.script("gpt-4o", [{"delay_s": 1.0}])
        body = {**chat("x"), "model": "gpt-4o"}

        async def two() -> list[httpx.Response]:
            async with httpx.AsyncClient(
                base_url=gw.url, timeout=30, headers={"authorization": f"Bearer {KEY_RESEARCH}"}
            ) as client:
                return await asyncio.gather(
                    *[client.post("/v1/chat/completions", json=body) for _ in range(2)]
                )

        assert [r.status_code for r in asyncio.run(two())] == [200, 200]
        models = sorted(r["model"] for r in gw.mock_stats()["requests"])
        assert models == ["claude-sonnet-4-5", "gpt-4o"]
