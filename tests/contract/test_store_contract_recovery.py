"""Store contract: what keeps money right when holds are lost or abandoned — orphan
settles, settled tombstones, expiry on every read and on the timer — and the health
calls of a healthy store (fixture ``store``: sqlite, redis)."""

from __future__ import annotations

from accounting.store.base import Reservation, Store
from tests.contract.conftest import StoreFactory
from tests.contract.helpers import HOUR, NOW, budget, charge, rq

START = 1_000 * HOUR  # a key window boundary


def _unknown(workflow_id: str | None = "wf-o", period: int | None = START) -> Reservation:
    """A reservation the store never saw (what a store that lost its data is shown)."""
    return Reservation(
        "never-held", "team-a", workflow_id, 400, 40, period, START + 60,
        cap_micros=1_000, cap_tokens=900,
    )  # fmt: skip


async def test_reservations_carry_the_requested_caps(store: Store) -> None:
    got = await store.reserve(rq(1, cap_micros=700, cap_tokens=90))
    assert (got.reservation.cap_micros, got.reservation.cap_tokens) == (700, 90)
    plain = await store.reserve(rq(1))
    assert (plain.reservation.cap_micros, plain.reservation.cap_tokens) == (None, None)


async def test_an_orphan_settle_is_charged_and_recreates_what_is_gone(store: Store) -> None:
    flags = {"is_retry": True, "is_fallback": True, "partial": True, "rule": "received"}
    tokens = {"input": 30, "output": 5}
    settled = await store.settle(_unknown(), charge(250, tokens=tokens, **flags), START + 5)
    assert settled.orphan and settled.workflow is not None
    wf = settled.workflow
    assert (wf.cap_micros, wf.cap_tokens, wf.status) == (1_000, 900, "running")
    assert (wf.spent_micros, wf.reserved_micros, wf.tokens_spent) == (250, 0, 35)
    assert (wf.calls, wf.retries, wf.fallbacks, wf.partial_streams) == (1, 1, 1, 1)
    assert (wf.started_at, wf.last_seen_at) == (START + 5, START + 5)
    assert wf == await store.get_workflow("team-a", "wf-o", START + 5)
    spend = await store.key_spend("team-a", HOUR, START + 5)
    assert (spend.spent_micros, spend.reserved_micros) == (250, 0)
    # it left a tombstone: repeating it changes nothing
    again = await store.settle(_unknown(), charge(250, tokens=tokens, **flags), START + 6)
    assert not again.orphan and again.workflow == wf
    assert (await store.key_spend("team-a", HOUR, START + 6)).spent_micros == 250
    # the re-created window counts against the key budget like any other
    got = await store.reserve(rq(750, workflow_id=None, now=START + 7, key_budget=budget(1_000)))
    assert got.reservation.period_start == START


async def test_an_orphan_settle_joins_an_existing_workflow(store: Store) -> None:
    live = await store.reserve(rq(100, workflow_id="wf-o", cap_micros=5_000, now=START))
    settled = await store.settle(_unknown(period=None), charge(60), START + 1)
    assert settled.orphan and settled.workflow is not None
    wf = settled.workflow
    assert (wf.cap_micros, wf.spent_micros, wf.reserved_micros, wf.calls) == (5_000, 60, 100, 1)
    assert wf.started_at == START
    done = (await store.settle(live.reservation, charge(90), START + 2)).workflow
    assert done is not None and (done.spent_micros, done.reserved_micros) == (150, 0)


async def test_an_orphan_without_workflow_or_window_is_only_ledgered(store: Store) -> None:
    settled = await store.settle(_unknown(None, None), charge(5), START)
    assert settled.orphan and settled.workflow is None
    assert not (await store.settle(_unknown(None, None), charge(5), START)).orphan


async def test_reading_a_workflow_expires_its_run_out_holds(store: Store) -> None:
    kb = budget(10_000)
    await store.reserve(rq(300, tokens=30, lease_s=10, key_budget=kb, now=START))
    await store.reserve(rq(200, tokens=20, lease_s=100, key_budget=kb, now=START))
    state = await store.get_workflow("team-a", "wf-1", START + 10)  # the lease ends at +10
    assert state is not None
    assert (state.spent_micros, state.reserved_micros, state.expired_holds) == (300, 200, 1)
    assert (state.tokens_spent, state.tokens_reserved, state.expired_micros) == (30, 20, 300)
    spend = await store.key_spend("team-a", HOUR, START + 10)  # its window too
    assert (spend.spent_micros, spend.reserved_micros) == (300, 200)
    assert await store.get_workflow("team-a", "wf-1", START + 11) == state  # once


async def test_the_stalled_listing_expires_run_out_holds(store: Store) -> None:
    await store.reserve(rq(300, workflow_id="quiet", lease_s=10, now=START))
    await store.reserve(rq(200, workflow_id="busy", lease_s=10, now=START + 100))
    (quiet,) = await store.list_stalled(START + 50)
    assert (quiet.workflow_id, quiet.spent_micros, quiet.reserved_micros) == ("quiet", 300, 0)
    assert quiet.expired_holds == 1


async def test_the_sweep_expires_every_run_out_hold(store: Store) -> None:
    kb = budget(10_000)
    await store.reserve(rq(100, key="team-a", workflow_id="a1", lease_s=10, now=START))
    await store.reserve(rq(200, key="team-b", workflow_id="b1", lease_s=20, now=START))
    dead = await store.reserve(
        rq(300, key="team-b", workflow_id=None, lease_s=10, key_budget=kb, now=START)
    )
    live = await store.reserve(rq(400, key="team-a", workflow_id="a1", lease_s=900, now=START))
    assert await store.sweep(START + 5) == 0
    assert await store.sweep(START + 30) >= 3
    a1 = await store.get_workflow("team-a", "a1", START + 30)
    b1 = await store.get_workflow("team-b", "b1", START + 30)
    assert a1 is not None and (a1.spent_micros, a1.reserved_micros) == (100, 400)
    assert b1 is not None and (b1.spent_micros, b1.reserved_micros, b1.expired_holds) == (200, 0, 1)
    window = await store.key_spend("team-b", HOUR, dead.reservation.expires_at)
    assert (window.spent_micros, window.reserved_micros) == (300, 0)
    assert await store.sweep(START + 31) == 0  # nothing left to expire
    late = await store.settle(dead.reservation, charge(120), START + 40)  # corrects it
    assert not late.orphan
    window = await store.key_spend("team-b", HOUR, dead.reservation.expires_at)
    assert (window.spent_micros, window.reserved_micros) == (120, 0)
    assert (await store.settle(live.reservation, charge(10), START + 50)).workflow is not None


async def test_a_healthy_store_checks_clean(store_factory: StoreFactory) -> None:
    first, second = store_factory(), store_factory()
    await first.open()
    await second.open()
    try:
        got = await first.reserve(rq(100, cap_micros=1_000))
        for replica in (first, second):
            await replica.check(NOW)
            await replica.ping()
            assert replica.reset_info() is None
        await first.accept_reset(NOW)  # harmless on a healthy store: nothing is lost
        for replica in (first, second):
            await replica.check(NOW + 1)
            assert replica.reset_info() is None
            state = await replica.get_workflow("team-a", "wf-1", NOW + 1)
            assert state is not None and state.reserved_micros == 100
        settled = await second.settle(got.reservation, charge(70), NOW + 2)
        assert not settled.orphan and settled.workflow is not None
        assert settled.workflow.spent_micros == 70
    finally:
        await first.close()
        await second.close()
