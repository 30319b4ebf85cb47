"""Store contract: workflow completion, stalled listing, admin caps and sweep."""

from __future__ import annotations

import pytest

from accounting.errors import BudgetExceeded
from accounting.store.base import Store
from tests.contract.helpers import NOW, charge, rq


async def _three_workflows(store: Store) -> None:
    for i, wid in enumerate(("old", "mid", "new")):
        await store.reserve(rq(1, workflow_id=wid, now=NOW + 10 * i))


async def test_stalled_lists_running_workflows_oldest_first(store: Store) -> None:
    await _three_workflows(store)
    stalled = await store.list_stalled(NOW + 15)
    assert [s.workflow_id for s in stalled] == ["old", "mid"]
    assert await store.count_stalled(NOW + 15) == 2
    assert [s.workflow_id for s in await store.list_stalled(NOW + 15, limit=1)] == ["old"]
    # strictly older than idle_before
    assert [s.workflow_id for s in await store.list_stalled(NOW + 10)] == ["old"]
    assert await store.count_stalled(NOW) == 0


async def test_activity_moves_a_workflow_out_of_the_stalled_list(store: Store) -> None:
    await _three_workflows(store)
    got = await store.reserve(rq(1, workflow_id="old", now=NOW + 30))
    assert [s.workflow_id for s in await store.list_stalled(NOW + 25)] == ["mid", "new"]
    await store.settle(got.reservation, charge(1), NOW + 40)
    assert [s.workflow_id for s in await store.list_stalled(NOW + 35)] == ["mid", "new"]


async def test_complete_workflow(store: Store) -> None:
    await _three_workflows(store)
    done = await store.complete_workflow("team-a", "old", NOW + 50)
    assert done is not None
    assert (done.status, done.completed_at) == ("completed", NOW + 50)
    again = await store.complete_workflow("team-a", "old", NOW + 60)
    assert again is not None  # idempotent: the first completion time stays
    assert (again.status, again.completed_at) == ("completed", NOW + 50)
    # completing swept first: the hold's lease (NOW + 60) had run out, counted as spent
    assert (done.reserved_micros, done.expired_holds) == (1, 0)
    assert (again.reserved_micros, again.spent_micros, again.expired_holds) == (0, 1, 1)
    assert [s.workflow_id for s in await store.list_stalled(NOW + 100)] == ["mid", "new"]
    assert await store.count_stalled(NOW + 100) == 2
    assert await store.complete_workflow("team-a", "missing", NOW) is None


async def test_a_completed_workflow_still_reserves_and_stays_completed(store: Store) -> None:
    first = await store.reserve(rq(100, cap_micros=300))
    await store.complete_workflow("team-a", "wf-1", NOW + 1)
    got = await store.reserve(rq(100, now=NOW + 2))
    assert got.workflow is not None
    assert got.workflow.status == "completed" and got.workflow.completed_at == NOW + 1
    assert got.workflow.last_seen_at == NOW + 2 and got.workflow.reserved_micros == 200
    settled = (await store.settle(first.reservation, charge(100), NOW + 3)).workflow
    assert settled is not None and settled.status == "completed"
    assert await store.list_stalled(NOW + 100) == []
    with pytest.raises(BudgetExceeded):
        await store.reserve(rq(101, now=NOW + 4))


async def test_set_workflow_cap_raises_lowers_and_removes(store: Store) -> None:
    await store.reserve(rq(100, cap_micros=150, cap_tokens=20))
    with pytest.raises(BudgetExceeded):
        await store.reserve(rq(100))
    raised = await store.set_workflow_cap("team-a", "wf-1", 1_000, None, NOW + 1)
    assert raised is not None
    assert (raised.cap_micros, raised.cap_tokens) == (1_000, None)
    assert raised.last_seen_at == NOW
    await store.reserve(rq(100, tokens=500))
    removed = await store.set_workflow_cap("team-a", "wf-1", None, 600, NOW + 2)
    assert removed is not None and (removed.cap_micros, removed.cap_tokens) == (None, 600)
    await store.reserve(rq(10**12, tokens=0))
    assert await store.set_workflow_cap("team-a", "nope", 1, 1, NOW) is None


async def test_step_is_recorded(store: Store) -> None:
    await store.reserve(rq(1, step="search"))
    await store.reserve(rq(1))
    state = await store.get_workflow("team-a", "wf-1", NOW)
    assert state is not None and state.step == "search"
    got = await store.reserve(rq(1, step="write"))
    assert got.workflow is not None and got.workflow.step == "write"


async def test_sweep_keeps_live_state(store: Store) -> None:
    got = await store.reserve(rq(100))
    claim = await store.idem_claim("team-a", "idem-1", "fp", 30.0, NOW)
    assert claim.token is not None
    assert await store.idem_complete("team-a", "idem-1", claim.token, b"answer", 3600.0, NOW)
    removed = await store.sweep(NOW + 10)
    assert isinstance(removed, int) and removed >= 0
    state = await store.get_workflow("team-a", "wf-1", NOW + 10)
    assert state is not None and state.reserved_micros == 100
    replay = await store.idem_claim("team-a", "idem-1", "fp", 30.0, NOW + 10)
    assert (replay.outcome, replay.record) == ("replay", b"answer")
    after = (await store.settle(got.reservation, charge(80), NOW + 11)).workflow
    assert after is not None and after.spent_micros == 80
