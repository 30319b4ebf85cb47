"""SqliteStore specifics: durability across a restart, pragmas, sweep, the schema
migration. Failure modes (timeouts, a full disk, a failing commit): test_sqlite_failures."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from accounting.errors import StoreUnavailable
from accounting.store.base import Reservation
from accounting.store.sqlite import SqliteStore
from accounting.store.sqlite_schema import SCHEMA_VERSION
from tests.contract.helpers import HOUR, NOW, budget, charge, rq
from tests.contract.sqlite_v1 import write_v1


async def test_state_survives_close_and_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "spend.db")
    store = SqliteStore(path)
    await store.open()
    done = await store.reserve(rq(400, cap_micros=1_000, key_budget=budget(5_000)))
    await store.settle(done.reservation, charge(300, tokens={"input": 9}), NOW + 1)
    live = await store.reserve(rq(200, now=NOW + 2, key_budget=budget(5_000)))
    claim = await store.idem_claim("team-a", "x", "fp", 30.0, NOW)
    assert claim.token is not None
    await store.idem_complete("team-a", "x", claim.token, b"kept", 600.0, NOW + 3)
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
        after = (await reopened.settle(live.reservation, charge(150), NOW + 5)).workflow
        assert after is not None
        assert (after.spent_micros, after.reserved_micros, after.calls) == (450, 0, 2)
        assert (await reopened.idem_claim("team-a", "x", "fp", 30.0, NOW + 6)).record == b"kept"
    finally:
        await reopened.close()


async def test_wal_schema_version_and_ledger(tmp_path: Path) -> None:
    path = str(tmp_path / "spend.db")
    store = SqliteStore(path)
    await store.open()
    got = await store.reserve(rq(10))
    worst = charge(7, model="m1", request_id="req-1", rule="worst_case")
    await store.settle(got.reservation, worst, NOW + 1)
    await store.settle(got.reservation, worst, NOW + 2)
    await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        rows = conn.execute("SELECT request_id, model, cost_micros, rule FROM spend_log")
        # one ledger row: the second settle is a no-op
        assert rows.fetchall() == [("req-1", "m1", 7, "worst_case")]
    finally:
        conn.close()


async def test_sweep_expires_and_removes_idle_state(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "spend.db"), workflow_ttl_s=1_000)
    await store.open()
    try:
        await store.reserve(rq(10, workflow_id="idle", lease_s=5, key_budget=budget(100)))
        await store.reserve(rq(10, workflow_id="busy", now=NOW + 4_500))
        await store.idem_claim("team-a", "s1", "fp", 10.0, NOW)
        kept = await store.idem_claim("team-a", "s2", "fp", 10_000.0, NOW)
        removed = await store.sweep(NOW + 5_000)
        # two holds expired (both leases ran out); deleted: the idle workflow, its
        # expired hold, its key window and the expired claim
        assert removed == 2 + 4
        assert await store.get_workflow("team-a", "idle", NOW + 5_000) is None
        busy = await store.get_workflow("team-a", "busy", NOW + 5_000)
        assert busy is not None
        assert (busy.spent_micros, busy.reserved_micros, busy.expired_holds) == (10, 0, 1)
        claim = await store.idem_claim("team-a", "s2", "fp", 10.0, NOW + 5_000)
        assert (claim.outcome, kept.outcome) == ("in_flight", "claimed")
    finally:
        await store.close()


async def test_sweep_drops_tombstones_a_workflow_ttl_after_their_lease(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "spend.db"), workflow_ttl_s=1_000)
    await store.open()
    try:
        got = await store.reserve(rq(10, lease_s=60))
        assert not (await store.settle(got.reservation, charge(4), NOW + 1)).orphan
        await store.reserve(rq(1, now=NOW + 1_050))  # the workflow stays active
        assert await store.sweep(NOW + 1_059) == 0  # the tombstone is younger than the TTL
        assert not (await store.settle(got.reservation, charge(4), NOW + 1_059)).orphan
        assert await store.sweep(NOW + 1_061) == 1  # the tombstone
        # gone: a settle now cannot tell it ever happened, and charges it as an orphan
        late = await store.settle(got.reservation, charge(4), NOW + 1_062)
        assert late.orphan and late.workflow is not None and late.workflow.spent_micros == 8
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


async def test_a_version_1_file_is_migrated_on_open(tmp_path: Path) -> None:
    path = str(tmp_path / "v1.db")
    write_v1(path)
    store = SqliteStore(path)
    await store.open()
    try:
        before = await store.get_workflow("team-a", "wf-1", NOW)
        assert before is not None and (before.spent_micros, before.reserved_micros) == (300, 200)
        res = Reservation("h1", "team-a", "wf-1", 200, 0, None, 4e9)
        after = await store.settle(res, charge(150, rule="received"), NOW)
        assert not after.orphan and after.workflow is not None
        assert (after.workflow.spent_micros, after.workflow.reserved_micros) == (450, 0)
        replay = await store.idem_claim("team-a", "team-a:chat:abc", "fp", 30.0, NOW)
        assert (replay.outcome, replay.record) == ("replay", b"kept")
        await store.ping()
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        rules = conn.execute("SELECT reservation_id, rule FROM spend_log ORDER BY id").fetchall()
        assert rules == [("h0", "reported"), ("h1", "received")]
        assert conn.execute("SELECT name FROM meta").fetchall() == [("ping",)]
    finally:
        conn.close()


async def test_a_newer_file_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "future.db")
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this build"):
        await SqliteStore(path).open()


async def test_bad_stored_values_never_make_a_workflow_unreadable(tmp_path: Path) -> None:
    """A row holding what no write of this version leaves (text in an integer column,
    a huge REAL, broken JSON; or a sum that overflowed into a REAL) is read back as
    ints and floats that can be written back: the workflow keeps working."""
    path = str(tmp_path / "spend.db")
    store = SqliteStore(path)
    await store.open()
    try:
        live = await store.reserve(rq(10, lease_s=5.0))
        conn = sqlite3.connect(path)
        try:
            conn.execute(
                "UPDATE workflows SET spent_micros = 9223372036854775800, calls = 'abc', "
                "retries = 1e300, tokens_by_kind = 'not json', started_at = 'x', step = 7"
            )
            conn.execute("UPDATE holds SET tokens = 'junk'")
            conn.commit()
        finally:
            conn.close()
        # expiring the hold overflows spent_micros into a REAL inside SQLite
        state = await store.get_workflow("team-a", "wf-1", NOW + 10)
        assert state is not None
        assert (state.spent_micros, state.calls, state.retries) == (2**63 - 1, 0, 2**63 - 1)
        assert (state.tokens_by_kind, state.started_at, state.step) == ({}, 0.0, "7")
        assert [s.workflow_id for s in await store.list_stalled(NOW + 100)] == ["wf-1"]
        after = (await store.settle(live.reservation, charge(3), NOW + 11)).workflow
        assert after is not None and after.spent_micros == 2**63 - 1 - 10 + 3
        again = await store.reserve(rq(1, now=NOW + 12))
        assert again.workflow is not None and again.workflow.reserved_micros == 1
    finally:
        await store.close()
