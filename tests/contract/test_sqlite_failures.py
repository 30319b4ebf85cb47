"""SqliteStore failure modes: a wedged writer (honest timeouts), a full disk (capped
file, and a real full filesystem), a read-only file, a failing COMMIT, a failing
operation (an OverflowError, a BaseException, one that kills the drain), a
transaction left open, on the thread writer (``writer="thread"``; the loop writer has
its own, ``test_sqlite_loop``). The writer thread is blocked
deterministically by a callable waiting on an Event in the store's own executor."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from accounting.errors import StoreUnavailable
from accounting.store import sqlite_ops as ops
from accounting.store.base import Reserved
from accounting.store.sqlite import SqliteStore
from accounting.store.sqlite_settle import settle
from tests.contract.helpers import HOUR, NOW, charge, rq


@pytest.fixture(params=[5.0])
async def store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(str(tmp_path / "spend.db"), op_timeout_s=request.param, writer="thread")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def _on_writer(store: SqliteStore, fn: Callable[[sqlite3.Connection], Any]) -> Future[Any]:
    """Run ``fn(conn)`` on the store's thread, outside any batch."""
    assert store._executor is not None and store._conn is not None
    return store._executor.submit(fn, store._conn)


def _block(store: SqliteStore) -> threading.Event:
    release = threading.Event()
    _on_writer(store, lambda _: release.wait(10))
    return release


async def _in_one_batch(release: threading.Event, *writes: Awaitable[Any]) -> list[Any]:
    """Queue ``writes`` behind the blocked writer, then free it: tasks start in order,
    so every write is queued before the last task releases the writer."""

    async def free() -> None:
        release.set()

    outcomes = await asyncio.gather(*writes, free(), return_exceptions=True)
    return outcomes[:-1]


@pytest.mark.parametrize("store", [0.2], indirect=True)
async def test_a_write_that_timed_out_is_never_applied(store: SqliteStore, tmp_path: Path) -> None:
    release = _block(store)
    try:
        with pytest.raises(StoreUnavailable, match="not applied"):
            await store.reserve(rq(100, cap_micros=1_000))
        with pytest.raises(StoreUnavailable):  # a wedged writer fails the readiness probe
            await store.ping()
        with pytest.raises(StoreUnavailable):  # reads are bounded the same way
            await store.key_spend("team-a", HOUR, NOW)
    finally:
        release.set()
    # the writer is free again: the queued reserve was skipped, not run late
    assert await store.get_workflow("team-a", "wf-1", NOW) is None
    await store.ping()
    conn = sqlite3.connect(str(tmp_path / "spend.db"))
    try:
        assert conn.execute("SELECT COUNT(*) FROM holds").fetchone()[0] == 0
    finally:
        conn.close()


def _fill_meta(conn: sqlite3.Connection) -> None:
    """Cap the file at its current size, then fill the last page of ``meta`` (where
    the probe's row goes) with rows of shrinking size: the probe needs a new page."""
    conn.execute("PRAGMA max_page_count = 1")  # clamps to the current page count
    n = 0
    for size in (2_000, 200, 20, 1):
        while True:
            n += 1
            try:
                conn.execute("INSERT INTO meta VALUES (?, ?)", (f"pinf{n:06d}", "x" * size))
            except sqlite3.OperationalError as exc:
                assert "full" in str(exc)
                break


async def test_a_full_disk_fails_the_probe_and_the_store_recovers(store: SqliteStore) -> None:
    await asyncio.wrap_future(_on_writer(store, _fill_meta))
    with pytest.raises(StoreUnavailable, match="full"):
        await store.ping()
    await asyncio.wrap_future(
        _on_writer(store, lambda c: c.execute("PRAGMA max_page_count = 99999"))
    )
    await store.ping()  # the failed write was rolled back; the connection is usable
    got = await store.reserve(rq(1))
    assert got.workflow is not None and got.workflow.reserved_micros == 1


async def test_a_read_only_file_fails_the_probe(store: SqliteStore) -> None:
    await asyncio.wrap_future(_on_writer(store, lambda c: c.execute("PRAGMA query_only = 1")))
    with pytest.raises(StoreUnavailable, match="readonly"):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.reserve(rq(1))
    await asyncio.wrap_future(_on_writer(store, lambda c: c.execute("PRAGMA query_only = 0")))
    await store.ping()


def _deferred_fk(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute(
        "CREATE TEMP TABLE child (pid INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )


async def test_a_failing_commit_fails_its_batch_and_leaves_the_connection_usable(
    store: SqliteStore,
) -> None:
    await asyncio.wrap_future(_on_writer(store, _deferred_fk))
    assert store._writes is not None
    orphan_child = store._writes.run(lambda conn: conn.execute("INSERT INTO child VALUES (1)"))
    # both run in one transaction, whose COMMIT the deferred foreign key refuses
    outcomes = await _in_one_batch(_block(store), orphan_child, store.reserve(rq(5)))
    assert all(isinstance(outcome, sqlite3.IntegrityError) for outcome in outcomes)
    assert await store.get_workflow("team-a", "wf-1", NOW) is None  # rolled back
    assert not await asyncio.wrap_future(_on_writer(store, lambda c: c.in_transaction))
    got = await store.reserve(rq(7))
    assert got.workflow is not None and got.workflow.reserved_micros == 7


async def test_a_failing_operation_is_rolled_back_alone(store: SqliteStore) -> None:
    assert store._writes is not None

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta VALUES ('half-done', 'x')")
        raise RuntimeError("a bug in an operation")

    failing, reserved = await _in_one_batch(
        _block(store), store._writes.run(broken), store.reserve(rq(5))
    )
    assert isinstance(failing, RuntimeError) and str(failing) == "a bug in an operation"
    assert isinstance(reserved, Reserved) and reserved.workflow is not None  # it committed
    rows = await asyncio.wrap_future(
        _on_writer(store, lambda c: c.execute("SELECT * FROM meta").fetchall())
    )
    assert rows == []  # the failing operation's own write was undone


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a real ENOSPC, which SQLite in WAL mode mostly meets at COMMIT."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def _fill(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "wb") as filler:
        while True:
            filler.write(b"\0" * 4096)


async def test_a_really_full_disk_fails_closed_and_recovers(small_disk: Path) -> None:
    store = SqliteStore(str(small_disk / "spend.db"), writer="thread")
    await store.open()
    try:
        await store.ping()
        _fill(small_disk / "filler")
        with pytest.raises(StoreUnavailable, match="full"):
            for i in range(100):  # the first writes may still fit in pages SQLite has
                await store.reserve(rq(1, workflow_id=f"wf-{i}", step="s" * 1_000))
        with pytest.raises(StoreUnavailable, match="full"):
            await store.ping()
        (small_disk / "filler").unlink()
        await store.ping()  # every failed batch was rolled back: the connection is fine
        got = await store.reserve(rq(1, workflow_id="after"))
        assert got.workflow is not None and got.workflow.reserved_micros == 1
    finally:
        await store.close()


def _committed(path: Path, sql: str) -> list[Any]:
    """Rows as another connection sees them: only what was committed."""
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_an_overflowing_operation_fails_alone_and_the_writer_goes_on(
    store: SqliteStore, tmp_path: Path
) -> None:
    """Values SQLite cannot store (OverflowError, not sqlite3.Error) inside a batch,
    bypassing the store's own range checks: each fails alone, the rest commits."""
    assert store._writes is not None
    held = await store.reserve(rq(50, workflow_id="wf-held"))
    huge = [
        rq(5, workflow_id="wf-x", cap_tokens=2**63),
        rq(5, workflow_id="wf-x", cap_micros=9223372036855 * 10**6),
        rq(2**64, workflow_id="wf-x"),
        rq(5, workflow_id="wf-x", tokens=2**64),
    ]
    writes = [store.reserve(rq(1, workflow_id="wf-a"))]
    writes += [store._writes.run(ops.reserve, req, f"r-{i}") for i, req in enumerate(huge)]
    writes.append(store._writes.run(settle, held.reservation, charge(2**64), NOW + 1))
    writes.append(store.reserve(rq(2, workflow_id="wf-b")))
    outcomes = await _in_one_batch(_block(store), *writes)
    assert all(isinstance(o, OverflowError) for o in outcomes[1:-1]), outcomes
    assert isinstance(outcomes[0], Reserved) and isinstance(outcomes[-1], Reserved)
    wids = "SELECT workflow_id FROM workflows ORDER BY workflow_id"
    assert _committed(tmp_path / "spend.db", wids) == [("wf-a",), ("wf-b",), ("wf-held",)]
    assert not await asyncio.wrap_future(_on_writer(store, lambda c: c.in_transaction))
    # the writer keeps running; the hold whose settle failed is still live
    after = await store.settle(held.reservation, charge(30), NOW + 2)
    assert after.workflow is not None and after.workflow.spent_micros == 30
    await store.ping()


class _Halt(BaseException):
    """Not an Exception (like SystemExit or KeyboardInterrupt)."""


async def test_an_exception_that_is_no_exception_fails_only_its_caller(store: SqliteStore) -> None:
    assert store._writes is not None

    def halts(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta VALUES ('half-done', 'x')")
        raise _Halt

    halted, reserved = await _in_one_batch(
        _block(store), store._writes.run(halts), store.reserve(rq(5))
    )
    assert isinstance(halted, RuntimeError) and isinstance(halted.__cause__, _Halt)
    assert isinstance(reserved, Reserved)
    got = await store.reserve(rq(1, now=NOW + 1))
    assert got.workflow is not None and got.workflow.reserved_micros == 6


async def test_a_drain_that_dies_fails_its_batch_and_the_next_write_runs(
    store: SqliteStore,
) -> None:
    """An exception escaping the whole batch (the transaction gone, then a BaseException):
    every caller of the batch gets StoreUnavailable, nothing stays open or scheduled."""
    assert store._writes is not None

    def escapes(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")
        raise _Halt

    outcomes = await _in_one_batch(
        _block(store), store.reserve(rq(5)), store._writes.run(escapes), store.reserve(rq(6))
    )
    assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
    assert await store.get_workflow("team-a", "wf-1", NOW) is None  # rolled back
    got = await store.reserve(rq(7))
    assert got.workflow is not None and got.workflow.reserved_micros == 7
    await store.ping()


async def test_a_transaction_left_open_does_not_take_the_next_batch_with_it(
    store: SqliteStore, tmp_path: Path
) -> None:
    await asyncio.wrap_future(_on_writer(store, lambda c: c.execute("BEGIN")))
    got = await store.reserve(rq(3))
    assert got.workflow is not None
    assert _committed(tmp_path / "spend.db", "SELECT reserved_micros FROM workflows") == [(3,)]
