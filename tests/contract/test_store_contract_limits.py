"""Store contract: per-key rate limits (``accounting.limits``) — token buckets for rpm
and tpm that refill by the clock, in-flight leases that expire, all or nothing, shared
by every replica of the store. Fixture ``store``: sqlite, redis, cluster."""

from __future__ import annotations

import asyncio

import pytest

from accounting.limits import KeyLimits
from accounting.store.base import Store
from tests.contract.conftest import StoreFactory
from tests.contract.helpers import NOW

LEASE = NOW + 600


async def admit(store: Store, limits: KeyLimits, tokens: int = 10, lease: str = "r", at: float = 0):  # type: ignore[no-untyped-def]
    return await store.limiter().admit("team-a", limits, tokens, lease, LEASE + at, NOW + at)


async def test_rpm_admits_a_minutes_burst_then_one_per_refill(store: Store) -> None:
    limits = KeyLimits(rpm=60)
    verdicts = [await admit(store, limits, lease=f"r{i}") for i in range(61)]
    assert all(v.admitted for v in verdicts[:60])
    assert verdicts[60].limit == "rpm" and verdicts[60].retry_after_s == pytest.approx(1.0)
    assert (await admit(store, limits, at=0.5)).retry_after_s == pytest.approx(0.5)
    assert (await admit(store, limits, at=1.0)).admitted
    assert not (await admit(store, limits, at=1.0)).admitted


async def test_tpm_takes_the_estimate_and_gets_back_what_was_not_used(store: Store) -> None:
    limits = KeyLimits(tpm=1000)
    assert (await admit(store, limits, tokens=600, lease="a")).admitted
    refused = await admit(store, limits, tokens=600, lease="b")
    assert refused.limit == "tpm" and refused.retry_after_s == pytest.approx(
        12.0
    )  # 200 of 1000/min
    await store.limiter().release("team-a", limits, "a", 500, NOW)  # it used 100
    assert (await admit(store, limits, tokens=600, lease="b")).admitted


async def test_more_than_estimated_is_taken_so_the_next_waits(store: Store) -> None:
    limits = KeyLimits(tpm=1000)
    assert (await admit(store, limits, tokens=100, lease="a")).admitted
    await store.limiter().release("team-a", limits, "a", -1900, NOW)  # it used 2000
    refused = await admit(store, limits, tokens=100, lease="b")
    # never below one window's debt: -1000, so 1100 tokens to refill: 66 s
    assert refused.limit == "tpm" and refused.retry_after_s == pytest.approx(66.0)


async def test_a_request_larger_than_the_whole_minute_waits_for_a_full_bucket(
    store: Store,
) -> None:
    limits = KeyLimits(tpm=1000)
    assert (await admit(store, limits, tokens=5000, lease="a")).admitted
    assert (await admit(store, limits, tokens=5000, lease="b", at=59)).limit == "tpm"
    assert (await admit(store, limits, tokens=5000, lease="b", at=60)).admitted


async def test_inflight_counts_leases_until_released_or_expired(store: Store) -> None:
    limits = KeyLimits(max_inflight=2)
    assert (await admit(store, limits, lease="a")).admitted
    assert (await admit(store, limits, lease="b")).admitted
    refused = await admit(store, limits, lease="c")
    assert refused.limit == "inflight" and refused.retry_after_s > 0
    await store.limiter().release("team-a", limits, "a", 0, NOW)
    assert (await admit(store, limits, lease="c")).admitted
    assert not (await admit(store, limits, lease="d")).admitted
    # a replica died holding its leases: they end at their expiry
    assert (await admit(store, limits, lease="d", at=601)).admitted


async def test_a_refusal_takes_nothing_from_the_other_limits(store: Store) -> None:
    limits = KeyLimits(rpm=10, tpm=100, max_inflight=5)
    assert (await admit(store, limits, tokens=100, lease="a")).admitted
    for i in range(5):  # refused by tpm: rpm and the leases untouched
        assert (await admit(store, limits, tokens=50, lease=f"x{i}")).limit == "tpm"
    only_rpm = KeyLimits(rpm=10, max_inflight=5)
    verdicts = [await admit(store, only_rpm, lease=f"y{i}") for i in range(10)]
    assert [v.admitted for v in verdicts] == [True] * 4 + [False] * 6  # 9 left of rpm, 4 leases
    assert {v.limit for v in verdicts[4:]} == {"inflight"}


async def test_keys_do_not_share_limits(store: Store) -> None:
    limits = KeyLimits(rpm=1)
    assert (await admit(store, limits)).admitted
    assert not (await admit(store, limits)).admitted
    other = await store.limiter().admit("team-b", limits, 1, "r", LEASE, NOW)
    assert other.admitted


async def test_replicas_share_one_limit_atomically(store_factory: StoreFactory) -> None:
    a, b = store_factory(), store_factory()
    await a.open()
    await b.open()
    try:
        limits = KeyLimits(rpm=30)

        async def one(store: Store, i: int) -> bool:
            verdict = await store.limiter().admit("team-a", limits, 1, f"r{i}", LEASE, NOW)
            return verdict.admitted

        results = await asyncio.gather(*[one(a if i % 2 else b, i) for i in range(50)])
        assert results.count(True) == 30
    finally:
        await a.close()
        await b.close()
