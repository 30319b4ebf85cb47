"""SqliteStore and the workflow guardrails: the schema version 3 migration (from v2,
and from v1 through v2), no statement for a guardrail a request does not carry, the
sweep of loop counts and kind costs, the indexes the listings use, and bad stored
values in the new columns."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from accounting.errors import GuardrailRefused
from accounting.store.base import Reservation
from accounting.store.sqlite import SqliteStore
from accounting.store.sqlite_schema import SCHEMA_VERSION, connect
from accounting.store.sqlite_workflows import CANCELLED_AMONG
from tests.contract.helpers import NOW, charge, rq
from tests.contract.sqlite_v1 import write_v1
from tests.contract.sqlite_v2 import write_v2


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    # every write on the thread's connection, whose statements the tests trace
    opened = SqliteStore(str(tmp_path / "spend.db"), workflow_ttl_s=1_000, writer="thread")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def _shape(path: str) -> dict[str, Any]:
    """Every table's columns (name, type, not null, default, key) and every index's
    columns and partial condition: what the schema is, however it was reached."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        shape: dict[str, Any] = {}
        for table in sorted(tables):
            shape[table] = [tuple(r[1:]) for r in conn.execute(f"PRAGMA table_info({table})")]
            for index in conn.execute(f"PRAGMA index_list({table})").fetchall():
                cols = [r[2] for r in conn.execute(f"PRAGMA index_info({index[1]})")]
                shape[f"{table}.{index[1]}"] = (cols, index[2], index[4])
        return shape
    finally:
        conn.close()


def _fresh(tmp_path: Path) -> dict[str, Any]:
    path = str(tmp_path / "fresh.db")
    connect(path).close()
    return _shape(path)


async def test_a_version_2_file_is_migrated_on_open(tmp_path: Path) -> None:
    path = str(tmp_path / "v2.db")
    write_v2(path)
    store = SqliteStore(path)
    await store.open()
    try:
        before = await store.get_workflow("team-a", "wf-1", NOW)
        assert before is not None and (before.step, before.reserved_micros) == ("plan", 200)
        assert (before.requests, before.deadline_at, before.max_calls, before.name) == (
            0, None, None, None,
        )  # fmt: skip
        assert (before.stop_reason, before.outcome, before.progress) == (None, None, None)
        res = Reservation("h1", "team-a", "wf-1", 200, 0, None, 4e9)
        after = await store.settle(res, charge(150), NOW)
        assert not after.orphan and after.workflow is not None
        assert after.workflow.spent_micros == 450
        with pytest.raises(GuardrailRefused) as refused:  # started at 1.0: long past 30 s
            await store.reserve(rq(1, timeout_s=30.0, new_call=True))
        assert (refused.value.reason, refused.value.limit) == ("expired", 30.0)
        stopped = await store.cancel_workflow("team-a", "wf-done", NOW)
        assert stopped is not None and (stopped.status, stopped.stop_reason) == (
            "completed", "cancelled",
        )  # fmt: skip
        page, _ = await store.list_workflows("team-a", "completed", NOW, None, 10)
        assert [s.workflow_id for s in page] == ["wf-done"]
        await store.reserve(
            rq(1, workflow_id="new", new_call=True, fingerprint="f", max_identical=1)
        )
        with pytest.raises(GuardrailRefused, match="loop"):
            await store.reserve(
                rq(1, workflow_id="new", new_call=True, fingerprint="f", max_identical=1)
            )
        await store.note_completed_cost("kind", 5, NOW)
        assert await store.kind_medians() == {"kind": 5}
        replay = await store.idem_claim("team-a", "chat:abc", "fp", 30.0, NOW)
        assert (replay.outcome, replay.record) == ("replay", b"kept")
    finally:
        await store.close()
    assert _shape(path) == _fresh(tmp_path)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


async def test_a_version_1_file_reaches_the_current_schema(tmp_path: Path) -> None:
    path = str(tmp_path / "v1.db")
    write_v1(path)
    store = SqliteStore(path)
    await store.open()
    try:
        got = await store.reserve(rq(1, new_call=True, max_calls=1, name="n"))
        assert got.workflow is not None
        assert (got.workflow.requests, got.workflow.spent_micros) == (1, 300)
        with pytest.raises(GuardrailRefused, match="call_limit"):
            await store.reserve(rq(1, new_call=True))
    finally:
        await store.close()
    assert _shape(path) == _fresh(tmp_path)


async def _on_thread(store: SqliteStore, sql: str, *args: Any) -> list[Any]:
    """Run ``sql`` on the store's own connection (on its worker thread)."""
    return await store._read(lambda conn: [tuple(r) for r in conn.execute(sql, args)])


class _Trace:
    """Every statement the store's connection runs, from now on."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    async def start(self, store: SqliteStore) -> _Trace:
        await store._read(lambda conn: conn.set_trace_callback(self.statements.append))
        return self

    def take(self) -> list[str]:
        taken, self.statements[:] = list(self.statements), []
        return taken


async def test_a_request_without_a_counted_guardrail_runs_no_extra_statement(
    store: SqliteStore,
) -> None:
    await store.reserve(rq(1))
    trace = await _Trace().start(store)
    await store.reserve(rq(1, now=NOW + 1))
    plain = trace.take()
    limits: dict[str, Any] = {"timeout_s": 60.0, "max_calls": 9, "name": "kind", "new_call": True}
    await store.reserve(rq(1, now=NOW + 2, **limits))
    await store.reserve(rq(1, now=NOW + 3, fingerprint="f", max_identical=0, new_call=True))
    await store.reserve(rq(1, now=NOW + 4, fingerprint="f", max_identical=3))  # a retry
    assert _sql(trace.take()) == _sql(plain) * 3
    await store.reserve(rq(1, now=NOW + 5, fingerprint="f", max_identical=3, new_call=True))
    counted = [s for s in trace.take() if "workflow_calls" in s]
    assert len(counted) == 2  # the count's read and its upsert


def _sql(statements: list[str]) -> list[str]:
    """The statements with their bound values (strings, numbers, NULL) blanked out."""
    return [re.sub(r"'[^']*'|\b\d[\d.e+]*\b|\bNULL\b", "?", sql) for sql in statements]


async def test_a_full_workflow_evicts_one_count_per_new_fingerprint(store: SqliteStore) -> None:
    for i in range(300):
        await store.reserve(rq(1, now=NOW + i, fingerprint=f"f{i}", max_identical=5, new_call=True))
    rows = await _on_thread(store, "SELECT fingerprint FROM workflow_calls")
    assert sorted(r[0] for r in rows) == sorted(f"f{i}" for i in range(44, 300))
    assert await _on_thread(store, "SELECT fingerprints FROM workflows") == [(256,)]


async def test_sweep_removes_loop_counts_and_costs_of_idle_workflows(store: SqliteStore) -> None:
    loop: dict[str, Any] = {"fingerprint": "f", "max_identical": 3, "new_call": True}
    await store.reserve(rq(1, workflow_id="idle", **loop))
    await store.reserve(rq(1, workflow_id="busy", now=NOW + 4_500, **loop))
    await store.note_completed_cost("old", 1, NOW)
    await store.note_completed_cost("kept", 1, NOW)
    await store.note_completed_cost("kept", 3, NOW + 4_500)
    removed = await store.sweep(NOW + 5_000)
    # two holds expired; deleted: the idle workflow, its hold, its count, the old kind's cost
    assert removed == 2 + 4
    rows = await _on_thread(store, "SELECT workflow_id FROM workflow_calls")
    assert rows == [("busy",)]
    assert await store.kind_medians() == {"kept": 1}


async def test_the_listings_use_their_indexes(store: SqliteStore) -> None:
    plan = await _on_thread(
        store,
        "EXPLAIN QUERY PLAN SELECT workflow_id FROM workflows WHERE key = ? AND status = ? "
        "AND workflow_id > ? ORDER BY workflow_id LIMIT 10",
        "k", "running", "a",
    )  # fmt: skip
    assert any("workflows_by_key_status" in row[-1] for row in plan), plan
    assert not any("TEMP B-TREE" in row[-1] for row in plan), plan
    plan = await _on_thread(store, f"EXPLAIN QUERY PLAN {CANCELLED_AMONG}", "[]")
    assert any("USING PRIMARY KEY (key=? AND workflow_id=?)" in row[-1] for row in plan), plan


async def test_bad_stored_guardrail_values_read_back(store: SqliteStore) -> None:
    await store.reserve(rq(1, timeout_s=60.0, max_calls=3, new_call=True))
    await _on_thread(
        store,
        "UPDATE workflows SET requests = 'abc', max_calls = 1e300, deadline_at = 'x', "
        "outcome = 'maybe', status = 'odd', stop_reason = NULL, progress = 'p', name = 5",
    )
    state = await store.get_workflow("team-a", "wf-1", NOW)
    assert state is not None
    assert (state.requests, state.max_calls, state.deadline_at) == (0, 2**63 - 1, 0.0)
    assert (state.outcome, state.status, state.progress, state.name) == (
        None, "running", 0.0, "5",
    )  # fmt: skip
    with pytest.raises(GuardrailRefused, match="expired"):  # a deadline that is no time
        await store.reserve(rq(1, now=NOW + 1))
