"""Store contract: the workflow guardrails checked inside the one atomic reserve — a
stop reason, the deadline, the call cap, the loop guard — before the budgets; what a
refusal keeps (creation, limits, step, last_seen_at) and what it never does (hold,
count). Fixture ``store``: sqlite, redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from accounting.errors import BudgetExceeded, GuardrailRefused
from accounting.store.base import Reserved, Store, WorkflowState
from accounting.store.common import FINGERPRINTS_KEPT
from tests.contract.conftest import StoreFactory
from tests.contract.helpers import HOUR, NOW, budget, charge, rq


def call(at: float = 0, fp: str | None = None, **kwargs: Any) -> Any:
    """A reservation that begins a request (``new_call``), ``at`` seconds after NOW."""
    loop = {"fingerprint": fp, "max_identical": kwargs.pop("max_identical", 2)} if fp else {}
    return rq(1, now=NOW + at, new_call=True, **loop, **kwargs)


async def refusal(store: Store, req: Any) -> GuardrailRefused:
    with pytest.raises(GuardrailRefused) as refused:
        await store.reserve(req)
    return refused.value


async def wf(store: Store, at: float = 0, wid: str = "wf-1") -> WorkflowState:
    state = await store.get_workflow("team-a", wid, NOW + at)
    assert state is not None
    return state


async def test_the_timeout_sets_a_deadline_that_later_requests_only_lower(store: Store) -> None:
    first = await store.reserve(call(timeout_s=30.0))
    assert first.workflow is not None and first.workflow.deadline_at == NOW + 30
    raised = await store.reserve(call(5, timeout_s=600.0))
    assert raised.workflow is not None and raised.workflow.deadline_at == NOW + 30
    lowered = await store.reserve(call(6, timeout_s=20.0))  # started_at + 20, not now + 20
    assert lowered.workflow is not None and lowered.workflow.deadline_at == NOW + 20
    later = await store.reserve(rq(1, workflow_id="wf-2", now=NOW + 7))
    assert later.workflow is not None and later.workflow.deadline_at is None
    set_late = await store.reserve(rq(1, workflow_id="wf-2", now=NOW + 8, timeout_s=10.0))
    assert set_late.workflow is not None and set_late.workflow.deadline_at == NOW + 7 + 10


async def test_past_the_deadline_everything_is_refused(store: Store) -> None:
    await store.reserve(call(timeout_s=30.0, key_budget=budget(10_000)))
    await store.reserve(rq(1, now=NOW + 29.5))  # a retry before the deadline
    before = await wf(store, 29.5)
    err = await refusal(store, rq(1, now=NOW + 30, step="late", key_budget=budget(10_000)))
    assert (err.reason, err.limit, err.value) == ("expired", 30.0, 30.0)
    err = await refusal(store, call(45.25))
    assert (err.reason, err.limit, err.value) == ("expired", 30.0, 45.25)
    after = await wf(store, 46)
    # nothing held or counted; the touch (step, last_seen_at) persisted
    assert (after.reserved_micros, after.requests) == (before.reserved_micros, 1)
    assert (after.step, after.last_seen_at) == ("late", NOW + 45.25)
    spend = await store.key_spend("team-a", HOUR, NOW + 46)
    assert spend.reserved_micros == 1


async def test_the_call_cap_counts_requests_not_attempts(store: Store) -> None:
    first = await store.reserve(call(max_calls=2))
    assert first.workflow is not None
    assert (first.workflow.max_calls, first.workflow.requests) == (2, 1)
    retry = await store.reserve(rq(1, now=NOW + 1))  # a retry or fallback: not a call
    assert retry.workflow is not None and retry.workflow.requests == 1
    await store.reserve(call(2, max_calls=5))  # a higher cap does not raise it
    err = await refusal(store, call(3))
    assert (err.reason, err.limit, err.value) == ("call_limit", 2, 2)
    again = await store.reserve(rq(1, now=NOW + 4))  # attempts of a running request go on
    assert again.workflow is not None and again.workflow.requests == 2
    state = await wf(store, 5)
    assert (state.max_calls, state.requests, state.reserved_micros) == (2, 2, 4)


async def test_a_lowered_call_cap_refuses_the_request_that_lowers_it(store: Store) -> None:
    for i in range(3):
        await store.reserve(call(i))
    err = await refusal(store, call(5, max_calls=3))
    assert (err.reason, err.limit, err.value) == ("call_limit", 3, 3)
    assert (await wf(store, 6)).max_calls == 3


async def test_a_request_refused_by_a_budget_is_not_counted(store: Store) -> None:
    await store.reserve(call(cap_micros=2, max_calls=2))
    with pytest.raises(BudgetExceeded):
        await store.reserve(rq(5, now=NOW + 1, new_call=True, fingerprint="x", max_identical=1))
    state = await wf(store, 2)
    assert state.requests == 1
    await store.reserve(call(3, fp="x", max_identical=1))  # "x" was never counted
    err = await refusal(store, call(4))
    assert err.reason == "call_limit"


async def test_the_loop_guard_counts_identical_requests(store: Store) -> None:
    await store.reserve(call(fp="same"))
    await store.reserve(rq(1, now=NOW + 1, fingerprint="same", max_identical=2))  # a retry
    await store.reserve(call(2, fp="same"))
    err = await refusal(store, call(3, fp="same"))
    assert (err.reason, err.limit, err.value) == ("loop", 2, 2)
    await store.reserve(call(4, fp="other"))  # another request is fine
    await store.reserve(call(5, fp="same", max_identical=3))  # the threshold is the request's
    # the guard off (0) or no fingerprint (an Idempotency-Key): neither checked nor counted
    await store.reserve(call(6, fp="same", max_identical=0))
    await store.reserve(rq(1, now=NOW + 7, new_call=True, max_identical=2))
    state = await wf(store, 8)
    assert state.requests == 6


async def test_the_loop_guard_threshold_is_the_requests(store: Store) -> None:
    err = None
    for i in range(4):
        try:
            await store.reserve(call(i, fp="f", max_identical=3))
        except GuardrailRefused as exc:
            err = exc
    assert err is not None and (err.reason, err.limit, err.value) == ("loop", 3, 3)


async def test_the_loop_guard_keeps_the_most_recently_counted_fingerprints(store: Store) -> None:
    await store.reserve(call(0, fp="f0"))
    for i in range(1, FINGERPRINTS_KEPT):
        await store.reserve(call(i, fp=f"f{i}"))
    await store.reserve(call(300, fp="f0"))  # f0 counted again: now the most recent
    await store.reserve(call(301, fp="new"))  # a full workflow forgets f1, the least recent
    assert (await refusal(store, call(302, fp="f0"))).reason == "loop"
    await store.reserve(call(303, fp="f1"))  # forgotten: counted from zero (forgets f2)
    await store.reserve(call(304, fp="f1"))
    assert (await refusal(store, call(305, fp="f1"))).reason == "loop"
    await store.reserve(call(306, fp="f2"))
    await store.reserve(call(307, fp="f255"))  # still kept: its second count
    assert (await refusal(store, call(308, fp="f255"))).value == 2


async def test_a_stopped_workflow_refuses_everything(store: Store) -> None:
    await store.reserve(call(max_calls=10, key_budget=budget(10_000)))
    await store.cancel_workflow("team-a", "wf-1", NOW + 1)
    for req in (call(2), rq(1, now=NOW + 2), rq(0, now=NOW + 2, key_budget=budget(10_000))):
        err = await refusal(store, req)
        assert (err.reason, err.detail) == ("cancelled", "cancelled")
    state = await wf(store, 3)
    assert (state.requests, state.reserved_micros, state.last_seen_at) == (1, 1, NOW + 2)
    assert (await store.key_spend("team-a", HOUR, NOW + 3)).reserved_micros == 1
    await store.reserve(call(4, workflow_id="wf-2"))  # other workflows go on
    await store.reserve(call(5, workflow_id="wf-3"))
    await store.cancel_workflow("team-a", "wf-3", NOW + 6, reason="cost_anomaly")
    err = await refusal(store, call(7, workflow_id="wf-3"))
    assert (err.reason, err.detail) == ("cancelled", "cost_anomaly")


async def test_the_checks_run_in_order(store: Store) -> None:
    await store.reserve(call(fp="x", max_identical=1, max_calls=1, timeout_s=10.0))
    # over the call cap, a loop and over budget: the call cap speaks
    err = await refusal(store, call(1, fp="x", max_identical=1, cap_micros=0))
    assert err.reason == "call_limit"
    assert (await refusal(store, call(11, fp="x", max_identical=1))).reason == "expired"
    await store.cancel_workflow("team-a", "wf-1", NOW + 12)
    assert (await refusal(store, call(13, fp="x", max_identical=1))).reason == "cancelled"
    # a loop before a budget
    await store.reserve(call(workflow_id="wf-2", fp="y", max_identical=1))
    err = await refusal(store, call(1, workflow_id="wf-2", fp="y", max_identical=1, cap_micros=0))
    assert err.reason == "loop"


async def test_a_refused_first_request_still_sets_its_limits_and_name(store: Store) -> None:
    req = rq(2_000, cap_micros=1_000, timeout_s=60.0, max_calls=3, name="triage", new_call=True)
    with pytest.raises(BudgetExceeded):
        await store.reserve(req)
    state = await wf(store)
    assert (state.deadline_at, state.max_calls, state.name) == (NOW + 60, 3, "triage")
    assert (state.requests, state.reserved_micros) == (0, 0)


async def test_the_name_is_set_by_the_first_request_that_names_it(store: Store) -> None:
    got = await store.reserve(call())
    assert got.workflow is not None and got.workflow.name is None
    named = await store.reserve(call(1, name="research"))
    assert named.workflow is not None and named.workflow.name == "research"
    renamed = await store.reserve(call(2, name="other"))
    assert renamed.workflow is not None and renamed.workflow.name == "research"


async def test_settles_after_a_stop_are_still_charged(store: Store) -> None:
    got = await store.reserve(call(max_calls=1))
    await store.cancel_workflow("team-a", "wf-1", NOW + 1)
    after = (await store.settle(got.reservation, charge(1, tokens={"input": 3}), NOW + 2)).workflow
    assert after is not None
    assert (after.spent_micros, after.reserved_micros, after.calls) == (1, 0, 1)
    assert (after.status, after.requests) == ("cancelled", 1)
    assert await store.list_stalled(NOW + 100) == []


async def _race(stores: list[Store], n: int) -> list[Reserved | BaseException]:
    calls = [stores[i % len(stores)].reserve(call(max_calls=7)) for i in range(n)]
    return await asyncio.gather(*calls, return_exceptions=True)


async def test_concurrent_requests_never_pass_the_call_cap(store_factory: StoreFactory) -> None:
    replicas = [store_factory(), store_factory()]
    for replica in replicas:
        await replica.open()
    try:
        outcomes = await _race(replicas, 40)
        assert sum(isinstance(o, Reserved) for o in outcomes) == 7
        refused = [o for o in outcomes if isinstance(o, GuardrailRefused)]
        assert len(refused) == 33 and {o.reason for o in refused} == {"call_limit"}
        state = await wf(replicas[1])
        assert (state.requests, state.reserved_micros) == (7, 7)
    finally:
        for replica in replicas:
            await replica.close()


BAD_GUARDRAILS: list[tuple[str, dict[str, Any]]] = [
    ("timeout_s", {"timeout_s": 0.0}),
    ("timeout_s", {"timeout_s": -1.0}),
    ("timeout_s", {"timeout_s": float("inf")}),
    ("timeout_s", {"timeout_s": float("nan")}),
    ("timeout_s", {"timeout_s": 10 * 366 * 86400 + 1}),
    ("timeout_s", {"timeout_s": "30"}),
    ("max_calls", {"max_calls": 0}),
    ("max_calls", {"max_calls": 2**53}),
    ("max_calls", {"max_calls": True}),
    ("max_calls", {"max_calls": 2.0}),
    ("max_identical", {"max_identical": -1}),
    ("max_identical", {"max_identical": 2**64}),
    ("name", {"name": ""}),
    ("name", {"name": "n" * 65}),
    ("fingerprint", {"fingerprint": "f" * 257, "max_identical": 2}),
]


@pytest.mark.parametrize(("field", "overrides"), BAD_GUARDRAILS)
async def test_out_of_range_guardrails_are_refused_before_anything_is_written(
    store: Store, field: str, overrides: dict[str, Any]
) -> None:
    await store.reserve(call(max_calls=5, timeout_s=60.0))
    before = await wf(store)
    with pytest.raises(ValueError, match=field):
        await store.reserve(call(1, **overrides))
    assert await wf(store) == before


async def test_the_bounds_themselves_are_kept(store: Store) -> None:
    top = 2**53 - 1
    got = await store.reserve(call(timeout_s=10 * 366 * 86400.0, max_calls=top, name="n" * 64))
    assert got.workflow is not None
    assert (got.workflow.deadline_at, got.workflow.max_calls) == (NOW + 10 * 366 * 86400, top)
    assert got.workflow.name == "n" * 64
    tiny = await store.reserve(call(1, workflow_id="wf-2", timeout_s=0.001))
    assert tiny.workflow is not None and tiny.workflow.deadline_at == NOW + 1 + 0.001
    err = await refusal(store, call(2, workflow_id="wf-2"))
    assert (err.reason, err.limit, err.value) == ("expired", 0.001, 1.0)


async def test_the_deadline_is_exact(store: Store) -> None:
    start = NOW + 0.123456789
    got = await store.reserve(rq(1, now=start, timeout_s=30.000001))
    assert got.workflow is not None and got.workflow.deadline_at == start + 30.000001
    assert await wf(store) == got.workflow
