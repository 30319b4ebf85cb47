"""``SqliteStore``: the embedded, durable default store.

A dedicated worker thread owns one connection; every operation off the request path
runs there so the event loop never blocks on it. Writes are atomic and isolated, each
in its own savepoint of a ``BEGIN IMMEDIATE`` transaction that commits the writes
queued together (group commit, ``sqlite_batch``). Reads that first expire holds whose
lease ran out (``get_workflow``, ``list_stalled``) are writes too and go the same way.
With ``writer="loop"`` the writes on every request's path (reserve, settle, the rate
limits) commit on the event loop itself through a second connection (``sqlite_loop``:
one group commit per loop iteration; a locked file and checkpoints go to the thread).

What it keeps: spend, holds (and settled holds as tombstones, until ``sweep``),
workflows (with their guardrails), the loop guard's counts (``workflow_calls``), key
windows, idempotency records, the costs of completed workflows by kind
(``kind_costs``) and an append-only ``spend_log`` ledger (with each charge's rule).
With WAL and ``synchronous=NORMAL`` a committed write survives a crash of the
process; an OS crash or power loss can lose the last transactions before the WAL was
synced, never corrupt the file. The store does not
forget otherwise, so it has no epoch: ``check`` only proves the file answers,
``reset_info`` is always None and ``accept_reset`` has nothing to accept.

Timeouts are honest (``op_timeout_s``, see ``sqlite_batch``): a write the caller gave
up on is skipped by the writer thread, never applied late; a read gets the same
bound. A full disk, a read-only file or a wedged writer raises StoreUnavailable, and
``ping`` exercises exactly that path (a write to ``meta`` and its read back).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from accounting.errors import AccountingError, StoreUnavailable
from accounting.store import sqlite_admin as admin
from accounting.store import sqlite_ops as ops
from accounting.store import sqlite_workflows as wfs
from accounting.store.base import (
    Charge,
    IdemClaim,
    KeySpend,
    Outcome,
    Reservation,
    Reserved,
    ReserveRequest,
    Settled,
    WorkflowState,
)
from accounting.store.common import (
    DEFAULT_WORKFLOW_TTL_S,
    MAX_NAME_CHARS,
    IdSource,
    check_duration,
    check_heartbeat,
    check_kind_cost,
    check_limit,
    check_listing,
    check_outcome,
    check_period,
    check_text,
    check_time,
    clip_error,
    period_start,
    validate_caps,
    validate_request,
    validate_settle,
)
from accounting.store.sqlite_batch import WriteBatcher
from accounting.store.sqlite_limits import SqliteLimiter
from accounting.store.sqlite_loop import LoopWriter, connect_on_loop
from accounting.store.sqlite_schema import connect
from accounting.store.sqlite_settle import settle

T = TypeVar("T")
log = logging.getLogger("spendgate.store")


def _checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(RESTART)")


class SqliteStore:
    """See ``accounting.store.base.Store`` for the contract."""

    def __init__(
        self,
        path: str,
        *,
        workflow_ttl_s: int = DEFAULT_WORKFLOW_TTL_S,
        op_timeout_s: float = 5.0,
        writer: Literal["loop", "thread"] = "thread",
    ) -> None:
        self.path = path
        self.workflow_ttl_s = workflow_ttl_s
        self.op_timeout_s = op_timeout_s
        self.writer = writer  # where reserve, settle and the rate limits commit
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._writes: WriteBatcher | None = None
        self._hot: LoopWriter | None = None
        self._checkpointing = False
        self._ids = IdSource()

    # -- plumbing ---------------------------------------------------------------
    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spendgate-sqlite")
        try:
            # No timeout here: a migration may take its time, and nothing waits on it.
            self._conn = await self._unavailable_on_error(self._run(connect, self.path))
            self._writes = WriteBatcher(self._executor, self._conn, self.op_timeout_s)
            if self.writer == "loop" and self.path != ":memory:":  # (one connection only)
                conn = connect_on_loop(self.path)
                self._hot = LoopWriter(conn, self._writes, self._checkpoint)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        executor, conn, hot = self._executor, self._conn, self._hot
        self._executor, self._conn, self._writes, self._hot = None, None, None, None
        if hot is not None:
            hot.close()
        if executor is None:
            return
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        executor.shutdown(wait=False)

    def _run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._executor is None:
            raise StoreUnavailable("the sqlite store is not open")
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def _unavailable_on_error(self, pending: asyncio.Future[T]) -> T:
        try:
            return await pending
        except sqlite3.OperationalError as exc:  # locked, full, read-only, I/O error
            raise StoreUnavailable(f"sqlite store {self.path}: {exc}") from exc

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._conn is None:
            raise StoreUnavailable("the sqlite store is not open")
        try:
            async with asyncio.timeout(self.op_timeout_s):
                return await self._unavailable_on_error(self._run(fn, self._conn, *args))
        except TimeoutError:
            raise StoreUnavailable(
                f"sqlite store {self.path}: no answer within {self.op_timeout_s:g} s"
            ) from None

    def limiter(self) -> SqliteLimiter:
        """Per-key rate limits kept in this file (``sqlite_limits``)."""
        return SqliteLimiter(self)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` as one atomic write on the request path (for the
        store's companions)."""
        return await self._hot_write(fn, *args)

    async def _hot_write(self, fn: Callable[..., T], *args: Any) -> T:
        """A write on every request's path: on the loop (``sqlite_loop``), unless the
        store writes on its thread only."""
        if self._hot is None:
            return await self._write(fn, *args)
        try:
            result: T = await self._hot.run(fn, *args)
        except sqlite3.OperationalError as exc:  # full, read-only, I/O error
            raise StoreUnavailable(f"sqlite store {self.path}: {exc}") from exc
        return result

    def _checkpoint(self) -> None:
        """Move the WAL into the file and restart it, on the store's thread (``sqlite_loop``)."""
        if self._checkpointing or self._conn is None:
            return
        self._checkpointing = True
        pending = self._run(_checkpoint, self._conn)
        pending.add_done_callback(self._checkpointed)

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpointing = False
        if not done.cancelled() and done.exception() is not None:
            log.warning("sqlite checkpoint failed: %s", done.exception())

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """One atomic write, committed with whatever else is queued (group commit)."""
        if self._writes is None:
            raise StoreUnavailable("the sqlite store is not open")
        try:
            result: T = await self._writes.run(fn, *args)
        except sqlite3.OperationalError as exc:  # locked, full, read-only, I/O error
            raise StoreUnavailable(f"sqlite store {self.path}: {exc}") from exc
        return result

    async def ping(self) -> None:
        if not await self._write(admin.ping, repr(time.time())):
            raise StoreUnavailable(f"sqlite store {self.path}: a write did not read back")

    async def check(self, now: float) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    def reset_info(self) -> dict[str, object] | None:
        return None  # a SQLite file does not forget: there is no reset to detect

    async def accept_reset(self, now: float) -> None:
        return None  # nothing to accept, see ``reset_info``

    # -- budgets ----------------------------------------------------------------
    async def reserve(self, req: ReserveRequest) -> Reserved:
        validate_request(req)
        outcome = await self._hot_write(ops.reserve, req, self._ids())
        if isinstance(outcome, AccountingError):  # BudgetExceeded, GuardrailRefused
            raise outcome
        return outcome

    async def settle(self, res: Reservation, charge: Charge, now: float) -> Settled:
        validate_settle(res, charge, now)
        return await self._hot_write(settle, res, charge, now)

    async def get_workflow(self, key: str, workflow_id: str, now: float) -> WorkflowState | None:
        check_time("now", now)
        return await self._write(admin.status, key, workflow_id, now)

    async def complete_workflow(
        self,
        key: str,
        workflow_id: str,
        now: float,
        outcome: Outcome = "succeeded",
        error: str | None = None,
    ) -> WorkflowState | None:
        check_time("now", now)
        check_outcome(outcome)
        clipped = clip_error(error)
        return await self._write(wfs.complete, key, workflow_id, now, outcome, clipped)

    async def cancel_workflow(
        self, key: str, workflow_id: str, now: float, reason: str = "cancelled"
    ) -> WorkflowState | None:
        check_time("now", now)
        check_text("reason", reason, MAX_NAME_CHARS)
        return await self._write(wfs.cancel, key, workflow_id, now, reason)

    async def heartbeat(
        self, key: str, workflow_id: str, now: float, step: str | None, progress: float | None
    ) -> WorkflowState | None:
        check_heartbeat(now, step, progress)
        return await self._write(wfs.heartbeat, key, workflow_id, now, step, progress)

    async def list_workflows(
        self, key: str, status: str, idle_before: float, after: str | None, limit: int
    ) -> tuple[list[WorkflowState], str | None]:
        check_listing(status, idle_before, limit)
        return await self._write(wfs.list_page, key, status, idle_before, after, limit)

    async def cancelled_among(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        if not pairs:
            return set()
        return await self._read(wfs.cancelled_among, pairs)

    async def note_completed_cost(self, name: str, cost_micros: int, now: float) -> None:
        check_kind_cost(name, cost_micros, now)
        await self._write(wfs.note_cost, name, cost_micros, now)

    async def kind_medians(self) -> dict[str, int]:
        return await self._read(wfs.medians)

    async def set_workflow_cap(
        self, key: str, workflow_id: str, cap_micros: int | None, cap_tokens: int | None, now: float
    ) -> WorkflowState | None:
        validate_caps(cap_micros, cap_tokens)
        return await self._write(admin.set_cap, key, workflow_id, cap_micros, cap_tokens)

    async def list_stalled(self, idle_before: float, limit: int = 100) -> list[WorkflowState]:
        check_time("idle_before", idle_before)
        check_limit(limit)
        return await self._write(admin.stalled, idle_before, limit)

    async def count_stalled(self, idle_before: float) -> int:
        check_time("idle_before", idle_before)
        return await self._read(admin.count_stalled, idle_before)

    async def key_spend(self, key: str, period_s: int, now: float) -> KeySpend:
        check_period("period_s", period_s)
        check_time("now", now)
        return await self._read(admin.key_spend, key, period_start(now, period_s))

    # -- idempotency ------------------------------------------------------------
    async def idem_claim(
        self, key: str, scope: str, fingerprint: str, lease_s: float, now: float
    ) -> IdemClaim:
        check_duration("lease_s", lease_s)
        check_time("now", now)
        return await self._write(admin.idem_claim, key, scope, fingerprint, lease_s, now)

    async def idem_complete(
        self, key: str, scope: str, token: str, record: bytes, ttl_s: float, now: float
    ) -> bool:
        check_duration("ttl_s", ttl_s)
        check_time("now", now)
        return await self._write(admin.idem_complete, key, scope, token, record, now + ttl_s)

    async def idem_release(self, key: str, scope: str, token: str) -> None:
        await self._write(admin.idem_release, key, scope, token)

    async def sweep(self, now: float) -> int:
        check_time("now", now)
        return await self._write(admin.sweep, now, now - self.workflow_ttl_s)
