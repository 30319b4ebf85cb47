"""Group commit for the SQLite store: writes queued while the store's thread is busy
run together in ONE transaction, each inside its own savepoint.

Each operation stays atomic and isolated (a failing one is rolled back to its
savepoint, the others are kept), but a burst of N writes pays for one ``BEGIN``/
``COMMIT`` and one hand-off between threads instead of N. Under no load a batch is a
single operation, exactly as before.

Timeouts are honest. The caller waits ``timeout_s`` at most (one timer per batcher
watches every waiting caller) and then raises
StoreUnavailable; an operation may only *start* within the first half of that time
(its deadline, checked by the writer thread against the monotonic clock just before
it runs). One the caller gave up on (timed out or cancelled) is skipped, never run
late. The other half is left for the batch it started in to commit, so a caller that
timed out was not told "failed" about a write that then lands; only a commit that
itself stalls for more than half the timeout (a disk that stops mid-write) can still
land after its caller gave up.

Whatever an operation raises (a ``sqlite3.Error``, an ``OverflowError`` for an int
SQLite cannot store, a bug) is rolled back to its savepoint and handed to its caller
alone; the rest of the batch goes on and commits. A batch that fails as a whole
(``BEGIN``/``COMMIT`` refused, the disk full, SQLite rolling the transaction back by
itself) is rolled back and every operation in it gets the error, so the connection is
always left outside a transaction and usable. Even an exception that escapes all of
that (one that is no ``Exception``, or a loop that is gone) fails the batch's callers
with StoreUnavailable and leaves the batcher able to start the next batch: the drain
never dies holding a transaction or the "scheduled" flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from accounting.errors import StoreUnavailable

# An operation must start within this share of the caller's timeout.
START_WITHIN = 0.5


@dataclass(slots=True)
class Op:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    deadline: float  # time.monotonic() after which the writer skips it
    abandoned: bool = False  # the caller stopped waiting (a plain flag: one writer, GIL)


Outcome = tuple["asyncio.Future[Any]", bool, Any]


class WriteBatcher:
    def __init__(self, executor: Executor, conn: sqlite3.Connection, timeout_s: float) -> None:
        self._executor = executor
        self._conn = conn
        self._timeout_s = timeout_s
        self._pending: deque[Op] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._waiting: deque[tuple[float, Op]] = deque()  # (caller's deadline, op), in order
        self._watchdog: asyncio.TimerHandle | None = None
        self._watchdog_loop: asyncio.AbstractEventLoop | None = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        op = Op(fn, args, loop.create_future(), time.monotonic() + self._timeout_s * START_WITHIN)
        with self._lock:
            self._pending.append(op)
            schedule, self._scheduled = not self._scheduled, True
        if schedule:
            self._executor.submit(self._drain, loop)
        self._wait_for(loop, op)
        try:
            return await op.future
        except asyncio.CancelledError:
            op.abandoned = True
            raise

    def _wait_for(self, loop: asyncio.AbstractEventLoop, op: Op) -> None:
        """Bound the caller's wait by ``timeout_s``: one timer for all waiting callers
        (their deadlines come in order), not one per operation."""
        waiting = self._waiting
        while waiting and waiting[0][1].future.done():
            waiting.popleft()
        waiting.append((loop.time() + self._timeout_s, op))
        if self._watchdog is None or self._watchdog_loop is not loop:
            self._watchdog, self._watchdog_loop = (
                loop.call_at(waiting[0][0], self._expire, loop),
                loop,
            )

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail every caller whose wait is over (the write is then skipped, never run
        late); look again at the next deadline."""
        self._watchdog = None
        waiting, now = self._waiting, loop.time()
        while waiting and (waiting[0][1].future.done() or waiting[0][0] <= now):
            _, op = waiting.popleft()
            if not op.future.done():
                op.abandoned = True
                op.future.set_exception(
                    StoreUnavailable(
                        f"the sqlite store did not answer within {self._timeout_s:g} s (writer "
                        "busy or the disk stalled); the operation was not applied"
                    )
                )
        if waiting:
            self._watchdog = loop.call_at(waiting[0][0], self._expire, loop)

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the store's thread: run batches until nothing is queued."""
        batch: list[Op] = []
        try:
            while True:
                with self._lock:
                    if not self._pending:
                        self._scheduled = False
                        return
                    batch = list(self._pending)
                    self._pending.clear()
                loop.call_soon_threadsafe(deliver, write_batch(self._conn, batch))
                batch = []
        except BaseException as exc:
            self._recover(loop, batch, exc)
            raise

    def _recover(
        self, loop: asyncio.AbstractEventLoop, batch: list[Op], exc: BaseException
    ) -> None:
        """The drain is dying: roll back, fail its batch and whatever is queued (none of
        it ran, or it was rolled back), and let the next write start a new drain."""
        rollback(self._conn)
        with self._lock:
            batch += self._pending
            self._pending.clear()
            self._scheduled = False
        error = StoreUnavailable(f"the sqlite writer failed ({exc!r}); the write was not applied")
        failed: list[Outcome] = [(op.future, False, error) for op in batch]
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(deliver, failed)


def write_batch(conn: sqlite3.Connection, batch: list[Op]) -> list[Outcome]:
    """Run ``batch`` in one transaction, each operation in its own savepoint."""
    try:
        rollback(conn)  # a transaction some failure left open must not swallow this batch
        conn.execute("BEGIN IMMEDIATE")
    except Exception as exc:  # noqa: BLE001 - not swallowed: every caller of the batch raises it
        rollback(conn)
        return [(op.future, False, exc) for op in batch]
    return commit_batch(conn, batch)


def commit_batch(conn: sqlite3.Connection, batch: list[Op]) -> list[Outcome]:
    """Run ``batch`` in the transaction just begun, each operation in its own
    savepoint, and commit it. An operation alone needs no savepoint: the transaction is
    its own, committed if it succeeds and rolled back if it fails."""
    if len(batch) == 1:
        return [_alone(conn, batch[0])]
    try:
        outcomes = [_one(conn, op) for op in batch]
        conn.execute("COMMIT")
    except Exception as exc:  # noqa: BLE001 - not swallowed: every caller of the batch raises it
        rollback(conn)
        return [(op.future, False, exc) for op in batch]
    except BaseException:
        rollback(conn)
        raise
    return outcomes


def rollback(conn: sqlite3.Connection) -> None:
    """Leave the connection outside any transaction, whatever failed."""
    if conn.in_transaction:
        # SQLite may already have rolled back by itself (SQLITE_FULL, IOERR): a
        # ROLLBACK then fails harmlessly, and there is nothing left to undo.
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _one(conn: sqlite3.Connection, op: Op) -> Outcome:
    if op.abandoned or time.monotonic() > op.deadline:
        return op.future, False, StoreUnavailable("the caller gave up before the write ran")
    conn.execute("SAVEPOINT op")
    try:
        value = op.fn(conn, *op.args)
    except BaseException as exc:  # not swallowed: handed to the caller, which raises it
        if not conn.in_transaction:
            raise  # SQLite rolled the whole batch back: every operation in it failed
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        return op.future, False, exc
    conn.execute("RELEASE op")
    return op.future, True, value


def _alone(conn: sqlite3.Connection, op: Op) -> Outcome:
    """``op`` as the whole transaction (what ``_one`` and the commit do, minus the
    savepoint): its own failure, or the commit's, is rolled back and handed to it."""
    if op.abandoned or time.monotonic() > op.deadline:
        rollback(conn)
        return op.future, False, StoreUnavailable("the caller gave up before the write ran")
    try:
        value = op.fn(conn, *op.args)
        conn.execute("COMMIT")
    except BaseException as exc:  # noqa: BLE001 - not swallowed: the caller raises it (as _one)
        rollback(conn)
        return op.future, False, exc
    return op.future, True, value


def _for_caller(exc: BaseException) -> Exception:
    """What the caller of a failed operation raises: the operation's exception, unless
    a future cannot carry it (StopIteration) or it would pose as something else in the
    caller (a cancellation, an exit, an interrupt of the thread that awaits)."""
    if isinstance(exc, Exception) and not isinstance(exc, StopIteration):
        return exc
    failed = RuntimeError(f"a store operation raised {exc!r}")
    failed.__cause__ = exc
    return failed


def deliver(outcomes: list[Outcome]) -> None:
    for future, ok, value in outcomes:
        if future.done():  # its caller timed out or was cancelled
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(_for_caller(value))
