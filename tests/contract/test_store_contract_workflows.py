"""Store contract: a workflow's life off the money path — completion with an outcome,
cancellation, heartbeats, the paged listing by status, the cancel poll, and the
costs of completed workflows by kind. Fixture ``store``: sqlite, redis."""

from __future__ import annotations

import math
from typing import Any

import pytest

from accounting.store.base import Reservation, Store, WorkflowState
from accounting.store.common import KIND_COSTS_KEPT, MAX_ERROR_CHARS
from tests.contract.helpers import NOW, charge, rq


async def wf(store: Store, at: float = 0, wid: str = "wf-1") -> WorkflowState:
    state = await store.get_workflow("team-a", wid, NOW + at)
    assert state is not None
    return state


async def test_complete_records_the_outcome_once(store: Store) -> None:
    await store.reserve(rq(1))
    done = await store.complete_workflow("team-a", "wf-1", NOW + 1, "failed", "tool crashed")
    assert done is not None
    assert (done.status, done.completed_at, done.outcome, done.error) == (
        "completed", NOW + 1, "failed", "tool crashed",
    )  # fmt: skip
    again = await store.complete_workflow("team-a", "wf-1", NOW + 2, "succeeded")
    assert again is not None and (again.outcome, again.error, again.completed_at) == (
        "failed", "tool crashed", NOW + 1,
    )  # fmt: skip
    await store.reserve(rq(1, workflow_id="wf-2"))
    plain = await store.complete_workflow("team-a", "wf-2", NOW + 3)  # the defaults
    assert plain is not None and (plain.outcome, plain.error) == ("succeeded", None)
    long = await store.complete_workflow("team-a", "wf-3", NOW, "failed", "x" * 5_000)
    assert long is None  # no such workflow: nothing is created


async def test_a_long_error_is_cut(store: Store) -> None:
    await store.reserve(rq(1))
    done = await store.complete_workflow("team-a", "wf-1", NOW, "failed", "é" * 5_000)
    assert done is not None and done.error == "é" * MAX_ERROR_CHARS
    assert (await wf(store)).error == "é" * MAX_ERROR_CHARS


async def test_cancel_stops_a_workflow_once(store: Store) -> None:
    await store.reserve(rq(1, lease_s=5.0))
    stopped = await store.cancel_workflow("team-a", "wf-1", NOW + 10)
    assert stopped is not None
    assert (stopped.status, stopped.stop_reason, stopped.cancelled_at) == (
        "cancelled", "cancelled", NOW + 10,
    )  # fmt: skip
    assert (stopped.expired_holds, stopped.last_seen_at) == (1, NOW)  # swept; not touched
    again = await store.cancel_workflow("team-a", "wf-1", NOW + 20, reason="cost_anomaly")
    assert again is not None and (again.stop_reason, again.cancelled_at) == ("cancelled", NOW + 10)
    assert await store.cancel_workflow("team-a", "nope", NOW) is None
    assert await store.cancel_workflow("team-b", "wf-1", NOW) is None
    assert await store.list_stalled(NOW + 100) == [] and await store.count_stalled(NOW + 100) == 0


async def test_complete_after_cancel_stays_cancelled(store: Store) -> None:
    await store.reserve(rq(1))
    await store.cancel_workflow("team-a", "wf-1", NOW + 1)
    done = await store.complete_workflow("team-a", "wf-1", NOW + 2, "failed", "stopped")
    assert done is not None
    assert (done.status, done.outcome, done.error, done.completed_at) == (
        "cancelled", "failed", "stopped", NOW + 2,
    )  # fmt: skip
    again = await store.complete_workflow("team-a", "wf-1", NOW + 3, "succeeded")
    assert again == done


async def test_cancel_after_complete_stays_completed_and_refuses(store: Store) -> None:
    await store.reserve(rq(1))
    await store.complete_workflow("team-a", "wf-1", NOW + 1)
    stopped = await store.cancel_workflow("team-a", "wf-1", NOW + 2, reason="cost_anomaly")
    assert stopped is not None
    assert (stopped.status, stopped.stop_reason, stopped.outcome) == (
        "completed", "cost_anomaly", "succeeded",
    )  # fmt: skip
    assert await store.cancelled_among([("team-a", "wf-1")]) == {("team-a", "wf-1")}


async def test_heartbeats_keep_a_workflow_alive(store: Store) -> None:
    await store.reserve(rq(1, step="plan"))
    beat = await store.heartbeat("team-a", "wf-1", NOW + 50, None, None)
    assert beat is not None
    assert (beat.last_seen_at, beat.heartbeat_at, beat.step, beat.progress) == (
        NOW + 50, NOW + 50, "plan", None,
    )  # fmt: skip
    assert [s.workflow_id for s in await store.list_stalled(NOW + 40)] == []
    assert await store.count_stalled(NOW + 51) == 1
    beat = await store.heartbeat("team-a", "wf-1", NOW + 60, "write", 42.5)
    assert beat is not None and (beat.step, beat.progress, beat.expired_holds) == (
        "write", 42.5, 1,
    )  # fmt: skip
    assert beat == await wf(store, 60)
    assert await store.heartbeat("team-a", "wf-2", NOW, "x", 1.0) is None
    assert await store.get_workflow("team-a", "wf-2", NOW) is None  # creates nothing


@pytest.mark.parametrize(
    ("field", "step", "progress"),
    [("progress", None, -0.1), ("progress", None, 100.01), ("progress", None, math.nan),
     ("progress", None, True), ("progress", None, "50"), ("step", "s" * 257, None)],
)  # fmt: skip
async def test_bad_heartbeats_are_refused(
    store: Store, field: str, step: str | None, progress: Any
) -> None:
    await store.reserve(rq(1))
    before = await wf(store)
    with pytest.raises(ValueError, match=field):
        await store.heartbeat("team-a", "wf-1", NOW + 1, step, progress)
    assert await wf(store) == before
    edge = await store.heartbeat("team-a", "wf-1", NOW + 1, "s" * 256, 100)
    assert edge is not None and edge.progress == 100.0


async def test_bad_completions_and_cancels_are_refused(store: Store) -> None:
    await store.reserve(rq(1))
    before = await wf(store)
    with pytest.raises(ValueError, match="outcome"):
        await store.complete_workflow("team-a", "wf-1", NOW, "maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reason"):
        await store.cancel_workflow("team-a", "wf-1", NOW, reason="")
    with pytest.raises(ValueError, match="reason"):
        await store.cancel_workflow("team-a", "wf-1", NOW, reason="r" * 65)
    with pytest.raises(ValueError, match="now"):
        await store.cancel_workflow("team-a", "wf-1", math.inf)
    assert await wf(store) == before


async def _mixed(store: Store) -> None:
    """a, c, e running (c idle since NOW), b completed, d cancelled; another key's x."""
    for wid in ("e", "d", "c", "b", "a"):
        await store.reserve(rq(1, workflow_id=wid, now=NOW + (0 if wid == "c" else 100)))
    await store.complete_workflow("team-a", "b", NOW + 101)
    await store.cancel_workflow("team-a", "d", NOW + 101)
    await store.reserve(rq(1, key="team-b", workflow_id="x", now=NOW))


async def _ids(store: Store, status: str, limit: int = 100) -> list[list[str]]:
    """Every page of a listing, followed through its cursors."""
    pages, after = [], None
    while True:
        page, after = await store.list_workflows("team-a", status, NOW + 50, after, limit)
        pages.append([s.workflow_id for s in page])
        if after is None:
            return pages
        assert after == page[-1].workflow_id


async def test_list_workflows_by_status(store: Store) -> None:
    await _mixed(store)
    assert await _ids(store, "running") == [["a", "c", "e"]]
    assert await _ids(store, "stalled") == [["c"]]
    assert await _ids(store, "completed") == [["b"]]
    assert await _ids(store, "cancelled") == [["d"]]
    page, after = await store.list_workflows("team-b", "stalled", NOW + 50, None, 10)
    assert ([s.workflow_id for s in page], after) == (["x"], None)
    assert await store.list_workflows("team-c", "running", NOW, None, 10) == ([], None)


async def test_list_workflows_pages_by_id(store: Store) -> None:
    await _mixed(store)
    assert await _ids(store, "running", limit=1) == [["a"], ["c"], ["e"]]
    assert await _ids(store, "running", limit=2) == [["a", "c"], ["e"]]
    assert await _ids(store, "running", limit=3) == [["a", "c", "e"]]  # full: no next page
    page, after = await store.list_workflows("team-a", "running", NOW + 50, "b", 10)
    assert ([s.workflow_id for s in page], after) == (["c", "e"], None)
    assert await store.list_workflows("team-a", "running", NOW + 50, "e", 10) == ([], None)


async def test_list_workflows_sweeps_what_it_lists(store: Store) -> None:
    await store.reserve(rq(7, workflow_id="old", lease_s=10.0))
    page, _ = await store.list_workflows("team-a", "stalled", NOW + 20, None, 10)
    assert [(s.workflow_id, s.spent_micros, s.expired_holds) for s in page] == [("old", 7, 1)]
    page, _ = await store.list_workflows("team-a", "stalled", NOW, None, 10)
    assert page == []  # idle_before is a bound on last_seen_at, strictly


@pytest.mark.parametrize(
    ("field", "args"),
    [("status", ("done", NOW, None, 10)), ("limit", ("running", NOW, None, 0)),
     ("limit", ("running", NOW, None, 1.5)), ("idle_before", ("running", math.nan, None, 10))],
)  # fmt: skip
async def test_bad_listings_are_refused(store: Store, field: str, args: Any) -> None:
    with pytest.raises(ValueError, match=field):
        await store.list_workflows("team-a", *args)


async def test_cancelled_among_answers_for_any_number_of_pairs(store: Store) -> None:
    for i in range(30):
        await store.reserve(rq(1, workflow_id=f"w{i}"))
    for i in range(0, 30, 7):
        await store.cancel_workflow("team-a", f"w{i}", NOW + 1)
    pairs = [("team-a", f"w{i}") for i in range(30)] + [("team-b", "w0"), ("team-a", "gone")]
    assert await store.cancelled_among(pairs) == {("team-a", f"w{i}") for i in (0, 7, 14, 21, 28)}
    assert await store.cancelled_among([]) == set()
    await store.reserve(rq(1, key="a:b{c}", workflow_id="w:1"))
    await store.cancel_workflow("a:b{c}", "w:1", NOW)
    assert await store.cancelled_among([("a:b{c}", "w:1"), ("a", "b{c}:w:1")]) == {
        ("a:b{c}", "w:1")
    }


async def test_kind_medians(store: Store) -> None:
    assert await store.kind_medians() == {}
    for cost in (500, 100, 300):
        await store.note_completed_cost("triage", cost, NOW)
    for cost in (40, 10, 30, 20):  # an even count: the lower of the middle two
        await store.note_completed_cost("research", cost, NOW)
    assert await store.kind_medians() == {"triage": 300, "research": 20}


async def test_each_kind_keeps_its_last_costs(store: Store) -> None:
    for cost in range(1, 201):  # only the last 101 (100..200) are kept
        await store.note_completed_cost("k", cost * 1_000, NOW + cost)
    assert await store.kind_medians() == {"k": 150_000}
    assert KIND_COSTS_KEPT == 101
    await store.note_completed_cost("k", 10**15, NOW + 300)  # 101..200 and 10**15
    assert await store.kind_medians() == {"k": 151_000}


async def test_bad_kind_costs_are_refused(store: Store) -> None:
    for name, cost in (("", 1), ("n" * 65, 1), ("k", -1), ("k", 2**53), ("k", 1.5)):
        with pytest.raises(ValueError, match=r"name|cost_micros"):
            await store.note_completed_cost(name, cost, NOW)  # type: ignore[arg-type]
    assert await store.kind_medians() == {}


async def test_a_settle_does_not_revive_a_finished_workflow(store: Store) -> None:
    got = await store.reserve(rq(1, workflow_id="done"))
    await store.complete_workflow("team-a", "done", NOW + 1)
    other = await store.reserve(rq(1, workflow_id="stopped"))
    await store.cancel_workflow("team-a", "stopped", NOW + 1)
    await store.settle(got.reservation, charge(1), NOW + 2)
    await store.settle(other.reservation, charge(1), NOW + 2)
    assert await store.list_stalled(NOW + 100) == []
    assert await _ids(store, "running") == [[]]
    assert (await wf(store, 3, "stopped")).status == "cancelled"


async def test_a_workflow_an_orphan_settle_recreates_is_listed(store: Store) -> None:
    lost = Reservation("never-held", "team-a", "wf-o", 5, 1, None, NOW + 60)
    settled = await store.settle(lost, charge(5), NOW)
    assert settled.orphan
    page, _ = await store.list_workflows("team-a", "running", NOW, None, 10)
    assert [(s.workflow_id, s.spent_micros) for s in page] == [("wf-o", 5)]
