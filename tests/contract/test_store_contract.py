"""The Store contract, run on every implementation (fixture ``store``: sqlite, redis)."""

from __future__ import annotations

import asyncio

import pytest

from accounting.errors import BudgetExceeded
from accounting.store.base import Reserved, Settled, Store
from tests.contract.conftest import StoreFactory
from tests.contract.helpers import HOUR, NOW, budget, charge, rq


async def test_first_request_sets_the_caps_later_ones_only_lower(store: Store) -> None:
    first = await store.reserve(rq(cap_micros=1_000, cap_tokens=500, step="plan"))
    assert first.workflow is not None
    assert (first.workflow.cap_micros, first.workflow.cap_tokens) == (1_000, 500)
    assert first.workflow.started_at == NOW and first.workflow.status == "running"
    assert first.workflow.step == "plan"

    raised = await store.reserve(rq(cap_micros=5_000, cap_tokens=900, now=NOW + 1))
    assert raised.workflow is not None
    assert (raised.workflow.cap_micros, raised.workflow.cap_tokens) == (1_000, 500)
    assert raised.workflow.step == "plan" and raised.workflow.last_seen_at == NOW + 1

    lowered = await store.reserve(rq(cap_micros=800, now=NOW + 2, step="act"))
    assert lowered.workflow is not None
    assert (lowered.workflow.cap_micros, lowered.workflow.cap_tokens) == (800, 500)
    assert lowered.workflow.started_at == NOW and lowered.workflow.step == "act"

    # an uncapped workflow gets a cap from a later request (no cap is the highest cap)
    await store.reserve(rq(workflow_id="wf-2"))
    later = await store.reserve(rq(workflow_id="wf-2", cap_micros=700))
    assert later.workflow is not None and later.workflow.cap_micros == 700


async def test_a_refused_first_request_still_sets_the_cap(store: Store) -> None:
    with pytest.raises(BudgetExceeded):
        await store.reserve(rq(2_000, cap_micros=1_000, step="s1"))
    state = await store.get_workflow("team-a", "wf-1", NOW)
    assert state is not None
    assert state.cap_micros == 1_000 and state.reserved_micros == 0 and state.step == "s1"
    with pytest.raises(BudgetExceeded):  # a later, higher cap does not lift it
        await store.reserve(rq(2_000, cap_micros=3_000))


async def test_reserve_and_settle_exact_arithmetic(store: Store) -> None:
    cap = 10**15 + 7
    got = await store.reserve(rq(123_456_789_012, tokens=4_000, cap_micros=cap))
    assert got.workflow is not None
    assert got.workflow.reserved_micros == 123_456_789_012
    assert got.workflow.tokens_reserved == 4_000
    assert got.workflow.remaining_micros == cap - 123_456_789_012
    assert got.reservation.expires_at == NOW + 60.0
    tokens = {"input": 1_000, "cached_input": 300, "output": 200, "partial_output": 5}
    cost = charge(98_765_432_109, tokens=tokens, model="m", request_id="r1", partial=True)
    after = (await store.settle(got.reservation, cost, NOW + 5)).workflow
    assert after is not None
    assert after.spent_micros == 98_765_432_109 and after.reserved_micros == 0
    assert after.tokens_spent == 1_205 and after.tokens_reserved == 0
    assert dict(after.tokens_by_kind) == tokens
    assert (after.calls, after.retries, after.fallbacks, after.partial_streams) == (1, 0, 0, 1)
    assert after.last_seen_at == NOW + 5
    assert after == await store.get_workflow("team-a", "wf-1", NOW + 5)

    second = await store.reserve(rq(1, now=NOW + 6))
    flags = charge(3, tokens={"input": 1}, sent=False, is_retry=True, is_fallback=True)
    final = (await store.settle(second.reservation, flags, NOW + 7)).workflow
    assert final is not None
    assert final.spent_micros == 98_765_432_112 and final.tokens_spent == 1_206
    assert (final.calls, final.retries, final.fallbacks, final.partial_streams) == (1, 1, 1, 1)
    assert final.tokens_by_kind["input"] == 1_001


async def test_budget_exceeded_leaves_nothing_held(store: Store) -> None:
    await store.reserve(rq(600, cap_micros=1_000, key_budget=budget(10_000)))
    with pytest.raises(BudgetExceeded) as refused:
        await store.reserve(rq(500, key_budget=budget(10_000)))
    err = refused.value
    assert (err.scope, err.unit, err.limit, err.committed, err.needed) == (
        "workflow", "usd", 1_000, 600, 500,
    )  # fmt: skip
    state = await store.get_workflow("team-a", "wf-1", NOW)
    assert state is not None and state.reserved_micros == 600
    assert (await store.key_spend("team-a", HOUR, NOW)).reserved_micros == 600
    exact = await store.reserve(rq(400))  # spent + reserved may reach the cap exactly
    assert exact.workflow is not None and exact.workflow.remaining_micros == 0


async def test_token_cap(store: Store) -> None:
    await store.reserve(rq(1, tokens=60, cap_tokens=100))
    with pytest.raises(BudgetExceeded) as refused:
        await store.reserve(rq(1, tokens=50))
    err = refused.value
    assert (err.scope, err.unit, err.limit, err.committed, err.needed) == (
        "workflow", "tokens", 100, 60, 50,
    )  # fmt: skip
    state = await store.get_workflow("team-a", "wf-1", NOW)
    assert state is not None and state.tokens_reserved == 60 and state.reserved_micros == 1
    await store.reserve(rq(1, tokens=40))


async def test_key_budget_windows(store: Store) -> None:
    start = 1_000 * HOUR  # a window boundary
    kb = budget(1_000)
    first = await store.reserve(rq(600, workflow_id=None, now=start + 10, key_budget=kb))
    assert first.workflow is None and first.reservation.period_start == start
    with pytest.raises(BudgetExceeded) as refused:  # another workflow, same key budget
        await store.reserve(rq(500, workflow_id="wf-x", now=start + 20, key_budget=kb))
    err = refused.value
    assert (err.scope, err.unit, err.limit, err.committed, err.needed) == (
        "key", "usd", 1_000, 600, 500,
    )  # fmt: skip
    # the refused workflow was still created, with nothing held
    created = await store.get_workflow("team-a", "wf-x", start + 20)
    assert created is not None and created.reserved_micros == 0
    assert await store.settle(first.reservation, charge(550), start + 30) == Settled(None)
    spend = await store.key_spend("team-a", HOUR, start + 40)
    assert (spend.period_start, spend.spent_micros, spend.reserved_micros) == (start, 550, 0)
    await store.reserve(rq(450, now=start + 50, key_budget=kb))
    with pytest.raises(BudgetExceeded):
        await store.reserve(rq(1, now=start + 60, key_budget=kb))
    # the next window starts from zero; the old one keeps its numbers
    await store.reserve(rq(900, now=start + HOUR, key_budget=kb))
    new = await store.key_spend("team-a", HOUR, start + HOUR + 1)
    assert (new.period_start, new.spent_micros, new.reserved_micros) == (start + HOUR, 0, 900)
    # the workflow's sweep found its 450 hold (lease long gone) and counted it as spent
    # in the window it was held against
    old = await store.key_spend("team-a", HOUR, start + 1)
    assert (old.spent_micros, old.reserved_micros) == (1_000, 0)
    other = await store.key_spend("team-b", HOUR, start + 1)
    assert (other.spent_micros, other.reserved_micros) == (0, 0)


async def test_settle_is_idempotent(store: Store) -> None:
    got = await store.reserve(rq(500, cap_micros=1_000, key_budget=budget(5_000)))
    first = await store.settle(got.reservation, charge(300, tokens={"output": 7}), NOW + 1)
    again = await store.settle(got.reservation, charge(300, tokens={"output": 7}), NOW + 2)
    assert first == again and not again.orphan  # the tombstone: not mistaken for an orphan
    once = first.workflow
    assert once is not None
    assert once.spent_micros == 300 and once.calls == 1 and once.tokens_spent == 7
    spend = await store.key_spend("team-a", HOUR, NOW)
    assert (spend.spent_micros, spend.reserved_micros) == (300, 0)


async def test_no_workflow_no_budget_still_reserves(store: Store) -> None:
    got = await store.reserve(rq(10**9, workflow_id=None))
    assert got.workflow is None and got.reservation.period_start is None
    assert await store.settle(got.reservation, charge(5), NOW + 1) == Settled(None)
    assert await store.settle(got.reservation, charge(5), NOW + 2) == Settled(None)


async def test_expired_holds_count_as_spent_and_late_settle_corrects(store: Store) -> None:
    kb = budget(10_000)
    dead = await store.reserve(rq(400, tokens=40, cap_micros=1_000, lease_s=10, key_budget=kb))
    swept = await store.reserve(rq(100, tokens=5, now=NOW + 20, key_budget=kb))
    state = swept.workflow
    assert state is not None
    assert (state.spent_micros, state.reserved_micros) == (400, 100)
    assert (state.tokens_spent, state.tokens_reserved) == (40, 5)
    assert (state.expired_holds, state.expired_micros) == (1, 400)
    spend = await store.key_spend("team-a", HOUR, NOW + 20)
    assert (spend.spent_micros, spend.reserved_micros) == (400, 100)

    late = (
        await store.settle(dead.reservation, charge(250, tokens={"input": 30}), NOW + 30)
    ).workflow
    assert late is not None
    assert (late.spent_micros, late.reserved_micros) == (250, 100)
    assert (late.tokens_spent, late.tokens_reserved) == (30, 5)
    assert (late.expired_holds, late.expired_micros) == (1, 0)
    spend = await store.key_spend("team-a", HOUR, NOW + 30)
    assert (spend.spent_micros, spend.reserved_micros) == (250, 100)
    assert (await store.settle(dead.reservation, charge(250), NOW + 31)).workflow == late


async def test_a_key_window_sweep_counts_other_workflows_holds(store: Store) -> None:
    kb = budget(1_000)
    await store.reserve(rq(700, workflow_id="dies", lease_s=5, key_budget=kb))
    got = await store.reserve(rq(300, workflow_id="other", now=NOW + 10, key_budget=kb))
    assert got.workflow is not None and got.workflow.expired_holds == 0
    dead = await store.get_workflow("team-a", "dies", NOW + 10)
    assert dead is not None
    assert (dead.spent_micros, dead.reserved_micros, dead.expired_holds) == (700, 0, 1)
    spend = await store.key_spend("team-a", HOUR, NOW + 10)
    assert (spend.spent_micros, spend.reserved_micros) == (700, 300)


async def _race(stores: list[Store], amount: int, n: int) -> list[Reserved | BaseException]:
    calls = [stores[i % len(stores)].reserve(rq(amount, cap_micros=7 * amount)) for i in range(n)]
    return await asyncio.gather(*calls, return_exceptions=True)


async def test_concurrent_reserves_never_overshoot(store: Store) -> None:
    outcomes = await _race([store], 1_000, 50)
    assert sum(isinstance(o, Reserved) for o in outcomes) == 7
    assert sum(isinstance(o, BudgetExceeded) for o in outcomes) == 43
    state = await store.get_workflow("team-a", "wf-1", NOW)
    assert state is not None and state.reserved_micros == 7_000


async def test_two_replicas_share_one_budget(store_factory: StoreFactory) -> None:
    replicas = [store_factory(), store_factory()]
    for replica in replicas:
        await replica.open()
    try:
        outcomes = await _race(replicas, 1_000, 50)
        assert sum(isinstance(o, Reserved) for o in outcomes) == 7
        assert sum(isinstance(o, BudgetExceeded) for o in outcomes) == 43
        for replica in replicas:
            state = await replica.get_workflow("team-a", "wf-1", NOW)
            assert state is not None and state.reserved_micros == 7_000
    finally:
        for replica in replicas:
            await replica.close()


async def test_workflow_ids_are_scoped_by_key(store: Store) -> None:
    await store.reserve(rq(600, key="team-a", cap_micros=1_000))
    assert await store.get_workflow("team-b", "wf-1", NOW) is None
    other = await store.reserve(rq(900, key="team-b", cap_micros=900))
    assert other.workflow is not None and other.workflow.key == "team-b"
    assert other.workflow.reserved_micros == 900
    mine = await store.get_workflow("team-a", "wf-1", NOW)
    assert mine is not None and mine.cap_micros == 1_000 and mine.reserved_micros == 600
    assert await store.complete_workflow("team-c", "wf-1", NOW) is None
