"""SqliteStore specifics: durability across a restart, pragmas, sweep."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from accounting.errors import StoreUnavailable
from accounting.store.sqlite import SqliteStore
from tests.contract.helpers import HOUR, NOW, budget, charge, rq


async def test_state_survives_close_and_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "spend.db")
    store = SqliteStore(path)
    await store.open()
    done = await store.reserve(rq(400, cap_micros=1_000, key_budget=budget(5_000)))
    await store.settle(done.reservation, charge(300, tokens={"input": 9}), NOW + 1)
    live = await store.reserve(rq(200, now=NOW + 2, key_budget=budget(5_000)))
    claim = await store.idem_claim("team-a:x", "fp", 30.0, NOW)
    assert claim.token is not None
    await store.idem_complete("team-a:x", claim.token, b"kept", 600.0, NOW + 3)
    before = await store.get_workflow("team-a", "wf-1", NOW + 3)
    await store.close()

    reopened = SqliteStore(path)
    await reopened.open()
    try:
        assert await reopened.get_workflow("team-a", "wf-1", NOW + 4) == before
        assert before is not None and before.reserved_micros == 200
        spend = await reopened.key_spend("team-a", HOUR, NOW + 4)
        assert (spend.spent_micros, spend.reserved_micros) == (300, 200)
        # the hold survived: settling it after the restart releases it
        after = await reopened.settle(live.reservation, charge(150), NOW + 5)
        assert after is not None
        assert (after.spent_micros, after.reserved_micros, after.calls) == (450, 0, 2)
        assert (await reopened.idem_claim("team-a:x", "fp", 30.0, NOW + 6)).record == b"kept"
    finally:
        await reopened.close()


async def test_wal_schema_version_and_ledger(tmp_path: Path) -> None:
    path = str(tmp_path / "spend.db")
    store = SqliteStore(path)
    await store.open()
    got = await store.reserve(rq(10))
    await store.settle(got.reservation, charge(7, model="m1", request_id="req-1"), NOW + 1)
    await store.settle(got.reservation, charge(7, model="m1", request_id="req-1"), NOW + 2)
    await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        rows = conn.execute("SELECT request_id, model, cost_micros FROM spend_log").fetchall()
        assert rows == [("req-1", "m1", 7)]  # one ledger row: the second settle is a no-op
    finally:
        conn.close()


async def test_sweep_removes_expired_and_idle_state(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "spend.db"), workflow_ttl_s=1_000)
    await store.open()
    try:
        await store.reserve(rq(10, workflow_id="idle", lease_s=5, key_budget=budget(100)))
        await store.reserve(rq(10, workflow_id="busy", now=NOW + 4_500))
        await store.idem_claim("s1", "fp", 10.0, NOW)
        kept = await store.idem_claim("s2", "fp", 10_000.0, NOW)
        removed = await store.sweep(NOW + 5_000)
        # the idle workflow, its hold, its key window and the expired claim
        assert removed == 4
        assert await store.get_workflow("team-a", "idle", NOW + 5_000) is None
        assert await store.get_workflow("team-a", "busy", NOW + 5_000) is not None
        busy = await store.idem_claim("s2", "fp", 10.0, NOW + 5_000)
        assert (busy.outcome, kept.outcome) == ("in_flight", "claimed")
    finally:
        await store.close()


async def test_a_closed_store_is_unavailable(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "spend.db"))
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.open()
    await store.ping()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.reserve(rq(1))


async def test_an_unusable_path_is_unavailable(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "missing-dir" / "spend.db"))
    with pytest.raises(StoreUnavailable):
        await store.open()
