"""The SQLite store's writes on the event loop (``sqlite_loop``): one commit per loop
iteration, a file another writer holds handed to the thread (the loop never waits for
a lock), a full disk failing at once and recovering, checkpoints on the thread."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from accounting.errors import StoreUnavailable
from accounting.store import sqlite_loop
from accounting.store.sqlite import SqliteStore
from tests.contract.helpers import NOW, charge, rq


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(str(tmp_path / "spend.db"), writer="loop")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def _hot_conn(store: SqliteStore) -> sqlite3.Connection:
    assert store._hot is not None
    return store._hot._conn


async def test_writes_queued_in_one_loop_iteration_commit_together(store: SqliteStore) -> None:
    statements: list[str] = []
    _hot_conn(store).set_trace_callback(statements.append)
    held = await asyncio.gather(*[store.reserve(rq(1, workflow_id=f"wf-{i}")) for i in range(20)])
    assert len(held) == 20 and statements.count("COMMIT") == 1
    settled = await asyncio.gather(*[store.settle(h.reservation, charge(1), NOW + 1) for h in held])
    assert statements.count("COMMIT") == 2 and all(s.workflow is not None for s in settled)


async def test_a_file_another_writer_holds_goes_to_the_thread_not_blocking_the_loop(
    store: SqliteStore,
) -> None:
    other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another worker's writer, mid-transaction
    try:
        pending = asyncio.ensure_future(store.reserve(rq(1)))
        ticks = 0
        while ticks < 50 and not pending.done():  # the loop keeps running meanwhile
            await asyncio.sleep(0)
            ticks += 1
        assert ticks == 50 and not pending.done()
    finally:
        other.execute("COMMIT")
        other.close()
    held = await pending  # the thread's writer waited for the lock, then wrote it
    state = await store.get_workflow("team-a", "wf-1", NOW)
    assert state is not None and state.reserved_micros == held.reservation.amount_micros


async def test_a_full_disk_fails_at_once_and_the_store_recovers(store: SqliteStore) -> None:
    await store.reserve(rq(1))
    conn = _hot_conn(store)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreUnavailable, match="full"):
        await asyncio.gather(*[store.reserve(rq(1, workflow_id=f"big-{i}")) for i in range(500)])
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert (await store.reserve(rq(1, workflow_id="after"))).workflow is not None
    assert await store.get_workflow("team-a", "big-0", NOW) is None  # nothing half-written


async def test_checkpoints_run_on_the_thread(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_loop, "CHECKPOINT_EVERY", 3)
    seen: list[str] = []
    await store._read(lambda conn: conn.set_trace_callback(seen.append))
    for i in range(3):
        await store.reserve(rq(1, workflow_id=f"wf-{i}"))
    await store._read(lambda conn: None)  # the checkpoint was queued before this read
    assert "PRAGMA wal_checkpoint(RESTART)" in seen
    hot: list[str] = []
    _hot_conn(store).set_trace_callback(hot.append)
    await store.reserve(rq(1, workflow_id="wf-9"))
    assert not any("checkpoint" in s for s in hot)
