"""Group commit for the SQLite store: writes queued while the store's thread is busy
run together in ONE transaction, each inside its own savepoint.

Each operation stays atomic and isolated (a failing one is rolled back to its
savepoint, the others are kept), but a burst of N writes pays for one ``BEGIN``/
``COMMIT`` and one hand-off between threads instead of N. Under no load a batch is a
single operation, exactly as before.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

Op = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]
Outcome = tuple["asyncio.Future[Any]", bool, Any]


class WriteBatcher:
    def __init__(self, executor: Executor, conn: sqlite3.Connection) -> None:
        self._executor = executor
        self._conn = conn
        self._pending: deque[Op] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._pending.append((fn, args, future))
            schedule, self._scheduled = not self._scheduled, True
        if schedule:
            self._executor.submit(self._drain, loop)
        return await future

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the store's thread: run batches until nothing is queued."""
        while True:
            with self._lock:
                if not self._pending:
                    self._scheduled = False
                    return
                batch = list(self._pending)
                self._pending.clear()
            loop.call_soon_threadsafe(_deliver, write_batch(self._conn, batch))


def write_batch(conn: sqlite3.Connection, batch: list[Op]) -> list[Outcome]:
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        return [(future, False, exc) for _, _, future in batch]
    outcomes = [_one(conn, fn, args, future) for fn, args, future in batch]
    try:
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        conn.rollback()
        return [(future, False, exc) for _, _, future in batch]
    return outcomes


def _one(
    conn: sqlite3.Connection,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    future: asyncio.Future[Any],
) -> Outcome:
    conn.execute("SAVEPOINT op")
    try:
        value = fn(conn, *args)
    except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
        # handed to the awaiting caller, which raises it: nothing is swallowed
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        return future, False, exc
    conn.execute("RELEASE op")
    return future, True, value


def _deliver(outcomes: list[Outcome]) -> None:
    for future, ok, value in outcomes:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
