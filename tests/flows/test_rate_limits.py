"""A key's own limits over real sockets: rpm, tpm and max_inflight, one limit across
replicas through Redis, a Retry-After computed from the limiter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from tests.support.clock import FakeClock
from tests.support.gateway import KEY_RESEARCH, Gateway, run_gateway
from tests.support.metrics import delta, scrape
from tests.support.redis_server import RedisServer

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}


def limited(config: dict[str, Any], **limits: int) -> dict[str, Any]:
    config["auth"]["keys"][0].update(limits)
    return config


async def burst(urls: list[str], n: int, body: dict[str, Any] = CHAT) -> list[httpx.Response]:
    """``n`` requests at once over at most 16 connections (the clock stands still)."""
    async with httpx.AsyncClient(
        timeout=30,
        headers={"authorization": f"Bearer {KEY_RESEARCH}"},
        limits=httpx.Limits(max_connections=16),
    ) as client:
        return await asyncio.gather(
            *[
                client.post(f"{urls[i % len(urls)]}/v1/chat/completions", json=body)
                for i in range(n)
            ]
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_900_000_000.0)


@pytest.fixture
def rpm_gateway(config: dict[str, Any], mock: str, clock: FakeClock) -> Iterator[Gateway]:
    with run_gateway(limited(config, rpm=60), mock, wall=clock) as gw:
        yield gw


def test_rpm_serves_a_minutes_burst_and_says_when_to_come_back(
    rpm_gateway: Gateway, clock: FakeClock
) -> None:
    before = scrape(rpm_gateway)
    answers = asyncio.run(burst([rpm_gateway.url], 100))
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) == 60 and statuses.count(429) == 40
    refused = [r for r in answers if r.status_code == 429]
    for r in refused:
        error = r.json()["error"]
        assert error["code"] == "key_rate_limited" and "60 requests per minute" in error["message"]
        # the next request fits in one second (60 a minute): what the OpenAI SDK waits
        assert r.headers["retry-after"] == "1" and r.headers["retry-after-ms"] == "1000"
    assert len(rpm_gateway.mock_stats()["requests"]) == 60  # refused: nothing sent
    after = scrape(rpm_gateway)
    assert delta(before, after, "spendgate_rate_limited_total", key="research", limit="rpm") == 40
    clock.advance(1.0)
    assert [r.status_code for r in asyncio.run(burst([rpm_gateway.url], 2))].count(200) == 1


def test_two_replicas_over_redis_share_one_rpm(
    config: dict[str, Any], mock: str, clock: FakeClock, own_redis_server: RedisServer
) -> None:
    config = limited(config, rpm=60)
    config["store"] = own_redis_server.url
    with ExitStack() as stack:
        a = stack.enter_context(run_gateway(config, mock, wall=clock))
        b = stack.enter_context(run_gateway(config, mock, wall=clock))
        statuses = [r.status_code for r in asyncio.run(burst([a.url, b.url], 100))]
    assert statuses.count(200) == 60 and statuses.count(429) == 40


def test_max_inflight_refuses_what_is_beyond_and_frees_as_requests_end(
    config: dict[str, Any], mock: str
) -> None:
    with run_gateway(limited(config, max_inflight=2), mock) as gw:
        gw.script("gpt-4o-mini", [{"delay_s": 0.5}, {"delay_s": 0.5}, {"delay_s": 0.5}])
        answers = asyncio.run(burst([gw.url], 4))
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [200, 200, 429, 429]
        for r in answers:
            if r.status_code == 429:
                assert "2 requests at once (inflight)" in r.json()["error"]["message"]
        # the leases went with their requests
        assert [r.status_code for r in asyncio.run(burst([gw.url], 2))] == [200, 200]


def test_tpm_takes_the_estimate_then_gives_back_what_was_not_used(
    config: dict[str, Any], mock: str
) -> None:
    with run_gateway(limited(config, tpm=200), mock) as gw:
        body = {**CHAT, "max_tokens": 150}  # estimate: the prompt bound + 150
        gw.script("gpt-4o-mini", [{"delay_s": 0.3}])
        first, second = asyncio.run(burst([gw.url], 2, body))
        codes = sorted([first.status_code, second.status_code])
        assert codes == [200, 429]
        refused = first if first.status_code == 429 else second
        assert "(tpm)" in refused.json()["error"]["message"]
        # the answer used 27 tokens: the rest came back, so the next fits at once
        assert asyncio.run(burst([gw.url], 1, body))[0].status_code == 200


def test_a_client_that_leaves_a_stream_gives_its_place_back(
    config: dict[str, Any], mock: str
) -> None:
    with run_gateway(limited(config, max_inflight=1), mock) as gw:
        gw.script("gpt-4o-mini", [{"chunk_delay_s": 0.05, "completion_tokens": 200}])
        headers = {"authorization": f"Bearer {KEY_RESEARCH}"}
        body = {**CHAT, "stream": True, "max_tokens": 200}
        with httpx.stream(
            "POST", f"{gw.url}/v1/chat/completions", json=body, headers=headers, timeout=30
        ) as r:
            assert r.status_code == 200
            lines = r.iter_lines()  # kept: a dropped iterator closes the connection
            next(lines)
            # its one place is taken while it streams
            assert asyncio.run(burst([gw.url], 1))[0].status_code == 429
        # the client hung up: the stream is cut and settled, and its lease goes with it
        deadline = time.monotonic() + 10
        while (code := asyncio.run(burst([gw.url], 1))[0].status_code) == 429:
            assert time.monotonic() < deadline, "the lease of a cut stream was never released"
            time.sleep(0.05)
        assert code == 200


def test_a_paused_redis_lets_limited_requests_through_and_says_so(
    config: dict[str, Any], mock: str, own_redis_server: RedisServer
) -> None:
    config = limited(config, rpm=60)
    config["store"] = own_redis_server.url
    with run_gateway(config, mock) as gw:
        before = scrape(gw)
        own_redis_server.pause()
        try:  # no budget to protect on these calls: load protection fails open
            codes = [r.status_code for r in asyncio.run(burst([gw.url], 3))]
        finally:
            own_redis_server.resume()
        assert codes == [200, 200, 200]
        after = scrape(gw)
        failed = delta(before, after, "spendgate_store_errors_total", operation="rate_admit")
        assert failed == 3
        assert asyncio.run(burst([gw.url], 1))[0].status_code == 200  # and it is back
