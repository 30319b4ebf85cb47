"""Group commit on the event loop itself, for the SQLite store's writes on every
request's path (reserve, settle).

With WAL and ``synchronous=NORMAL`` a commit does not sync: it appends to the WAL in
the OS's page cache, tens of microseconds for a batch. Handing that to the store's
thread costs more than the work (the executor's hand-off, the thread's wake-up, the
loop's wake-up back, the GIL passed to and fro), so these writes run on the loop, one
batch per loop iteration: every write queued while the loop ran its other callbacks
commits together, each in its own savepoint, exactly as on the thread
(``sqlite_batch``).

What could block the loop stays off it:

- **Checkpoints** (the step that does sync): this connection never checkpoints
  (``wal_autocheckpoint = 0``); the store checkpoints on its thread every
  ``CHECKPOINT_EVERY`` commits here, in ``RESTART`` mode, so the next write starts the
  WAL from its beginning (a passive checkpoint never catches up with a loop that
  writes on every iteration, and the WAL would grow without end). While it runs, the
  loop's batches find the file locked and queue on the thread behind it.
- **A file another writer holds** (the store's thread running a sweep, another
  worker of ``--workers N``): this connection waits for no lock
  (``busy_timeout = 0``); a batch that finds the file locked goes, whole, to the
  store's thread, whose writer waits there with the store's honest timeouts.

A disk that stalls mid-write would stall the loop; a full or read-only disk fails
the batch at once (StoreUnavailable), as on the thread.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Callable
from typing import Any

from accounting.store.sqlite_batch import Op, WriteBatcher, commit_batch, deliver, rollback

CHECKPOINT_EVERY = 256  # commits on the loop between checkpoints on the thread


class _Locked(Exception):
    """The file was locked when the batch began: its writes go to the thread."""


def connect_on_loop(path: str) -> sqlite3.Connection:
    """A second connection to a file ``sqlite_schema.connect`` has opened (and
    migrated), for writes on the loop."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 0")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    return conn


class LoopWriter:
    def __init__(
        self,
        conn: sqlite3.Connection,
        fallback: WriteBatcher,
        checkpoint: Callable[[], None],
    ) -> None:
        self._conn = conn
        self._fallback = fallback
        self._checkpoint = checkpoint
        self._pending: list[Op] = []
        self._scheduled = False
        self._commits = 0

    def close(self) -> None:
        self._conn.close()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        op = Op(fn, args, loop.create_future(), math.inf)
        self._pending.append(op)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._drain)
        try:
            return await op.future
        except _Locked:
            return await self._fallback.run(fn, *args)
        except asyncio.CancelledError:
            op.abandoned = True  # skipped if its batch has not run yet
            raise

    def _drain(self) -> None:
        batch, self._pending, self._scheduled = self._pending, [], False
        try:
            rollback(self._conn)
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            locked = "locked" in str(exc) or "busy" in str(exc)
            error: Exception = _Locked() if locked else exc
            deliver([(op.future, False, error) for op in batch])
            return
        try:
            outcomes = commit_batch(self._conn, batch)
        except BaseException as exc:  # an escape from an operation: its batch fails
            deliver([(op.future, False, exc) for op in batch])
            raise
        deliver(outcomes)
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0:
            self._checkpoint()
