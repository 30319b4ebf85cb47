"""``SqliteStore``: the embedded, durable default store.

One dedicated worker thread owns the one connection; every operation runs there so
the event loop never blocks. Writes are atomic and isolated, each in its own savepoint
of a ``BEGIN IMMEDIATE`` transaction that commits the writes queued together (group
commit, ``sqlite_batch``; WAL mode, ``synchronous=NORMAL``). Spend, holds,
workflows, idempotency records and an append-only ``spend_log`` ledger survive a
restart.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from accounting.errors import BudgetExceeded, StoreUnavailable
from accounting.store import sqlite_ops as ops
from accounting.store.base import (
    Charge,
    IdemClaim,
    KeySpend,
    Reservation,
    Reserved,
    ReserveRequest,
    WorkflowState,
)
from accounting.store.common import (
    DEFAULT_WORKFLOW_TTL_S,
    IdSource,
    new_token,
    period_start,
    validate_request,
)
from accounting.store.sqlite_batch import WriteBatcher

T = TypeVar("T")


class SqliteStore:
    """See ``accounting.store.base.Store`` for the contract."""

    def __init__(self, path: str, *, workflow_ttl_s: int = DEFAULT_WORKFLOW_TTL_S) -> None:
        self.path = path
        self.workflow_ttl_s = workflow_ttl_s
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._writes: WriteBatcher | None = None
        self._ids = IdSource()

    # -- plumbing ---------------------------------------------------------------
    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spendgate-sqlite")
        try:
            self._conn = await self._submit(ops.connect, self.path)
            self._writes = WriteBatcher(self._executor, self._conn)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        executor, conn = self._executor, self._conn
        self._executor, self._conn, self._writes = None, None, None
        if executor is None:
            return
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        executor.shutdown(wait=False)

    async def _submit(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreUnavailable("the sqlite store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite store {self.path}: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable("the sqlite store is not open")
        return self._conn

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._submit(fn, self._connection(), *args)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """One atomic write, committed with whatever else is queued (group commit)."""
        if self._writes is None:
            raise StoreUnavailable("the sqlite store is not open")
        try:
            result: T = await self._writes.run(fn, *args)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite store {self.path}: {exc}") from exc
        return result

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    # -- budgets ----------------------------------------------------------------
    async def reserve(self, req: ReserveRequest) -> Reserved:
        validate_request(req)
        outcome = await self._write(ops.reserve, req, self._ids())
        if isinstance(outcome, BudgetExceeded):
            raise outcome
        return outcome

    async def settle(self, res: Reservation, charge: Charge, now: float) -> WorkflowState | None:
        return await self._write(ops.settle, res, charge, now)

    async def get_workflow(self, key: str, workflow_id: str, now: float) -> WorkflowState | None:
        return await self._read(ops.get_state, key, workflow_id)

    async def complete_workflow(
        self, key: str, workflow_id: str, now: float
    ) -> WorkflowState | None:
        return await self._write(_complete, key, workflow_id, now)

    async def set_workflow_cap(
        self, key: str, workflow_id: str, cap_micros: int | None, cap_tokens: int | None, now: float
    ) -> WorkflowState | None:
        return await self._write(_set_cap, key, workflow_id, cap_micros, cap_tokens)

    async def list_stalled(self, idle_before: float, limit: int = 100) -> list[WorkflowState]:
        return await self._read(ops.select_stalled, idle_before, limit)

    async def count_stalled(self, idle_before: float) -> int:
        return await self._read(_count_stalled, idle_before)

    async def key_spend(self, key: str, period_s: int, now: float) -> KeySpend:
        return await self._read(_key_spend, key, period_start(now, period_s))

    # -- idempotency ------------------------------------------------------------
    async def idem_claim(
        self, scope: str, fingerprint: str, lease_s: float, now: float
    ) -> IdemClaim:
        return await self._write(_idem_claim, scope, fingerprint, lease_s, now)

    async def idem_complete(
        self, scope: str, token: str, record: bytes, ttl_s: float, now: float
    ) -> bool:
        return await self._write(_idem_complete, scope, token, record, now + ttl_s)

    async def idem_release(self, scope: str, token: str) -> None:
        await self._write(_idem_release, scope, token)

    async def sweep(self, now: float) -> int:
        return await self._write(_sweep, now, now - self.workflow_ttl_s)


def _complete(conn: sqlite3.Connection, key: str, wid: str, now: float) -> WorkflowState | None:
    wf = ops.load_wf(conn, key, wid)
    if wf is None:
        return None
    if wf["status"] != "completed":
        wf["status"], wf["completed_at"] = "completed", now
        ops.save_wf(conn, wf)
    return ops.to_state(wf)


def _set_cap(
    conn: sqlite3.Connection, key: str, wid: str, cap_micros: int | None, cap_tokens: int | None
) -> WorkflowState | None:
    wf = ops.load_wf(conn, key, wid)
    if wf is None:
        return None
    wf["cap_micros"], wf["cap_tokens"] = cap_micros, cap_tokens
    ops.save_wf(conn, wf)
    return ops.to_state(wf)


def _count_stalled(conn: sqlite3.Connection, idle_before: float) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM workflows WHERE status = 'running' AND last_seen_at < ?",
        (idle_before,),
    ).fetchone()
    return int(row[0])


def _key_spend(conn: sqlite3.Connection, key: str, pstart: int) -> KeySpend:
    row = conn.execute(
        "SELECT spent_micros, reserved_micros FROM key_periods WHERE key = ? AND period_start = ?",
        (key, pstart),
    ).fetchone()
    if row is None:
        return KeySpend(key, pstart, 0, 0)
    return KeySpend(key, pstart, int(row[0]), int(row[1]))


def _idem_claim(
    conn: sqlite3.Connection, scope: str, fingerprint: str, lease_s: float, now: float
) -> IdemClaim:
    row = conn.execute(
        "SELECT fingerprint, state, lease_until, record, expires_at FROM idempotency "
        "WHERE scope = ? AND expires_at > ?",
        (scope, now),
    ).fetchone()
    if row is not None:  # a completed record, or a pending one whose lease is live
        if row["fingerprint"] != fingerprint:
            return IdemClaim("conflict")
        if row["state"] == "completed":
            return IdemClaim("replay", record=bytes(row["record"]))
        return IdemClaim("in_flight", lease_until=float(row["lease_until"]))
    token, lease_until = new_token(), now + lease_s
    conn.execute(
        "INSERT OR REPLACE INTO idempotency (scope, fingerprint, state, token, lease_until, "
        "record, expires_at) VALUES (?, ?, 'pending', ?, ?, NULL, ?)",
        (scope, fingerprint, token, lease_until, lease_until),
    )
    return IdemClaim("claimed", token=token)


def _idem_complete(
    conn: sqlite3.Connection, scope: str, token: str, record: bytes, expires_at: float
) -> bool:
    cur = conn.execute(
        "UPDATE idempotency SET state = 'completed', record = ?, lease_until = NULL, "
        "expires_at = ? WHERE scope = ? AND token = ? AND state = 'pending'",
        (record, expires_at, scope, token),
    )
    return cur.rowcount == 1


def _idem_release(conn: sqlite3.Connection, scope: str, token: str) -> None:
    conn.execute(
        "DELETE FROM idempotency WHERE scope = ? AND token = ? AND state = 'pending'",
        (scope, token),
    )


def _sweep(conn: sqlite3.Connection, now: float, cutoff: float) -> int:
    """Expired idempotency records, then state idle since before ``cutoff``: holds
    (still-held ones are first counted as spent), workflows and key windows."""
    removed = conn.execute("DELETE FROM idempotency WHERE expires_at <= ?", (now,)).rowcount
    stale = conn.execute(
        "SELECT * FROM holds WHERE state = 'held' AND expires_at < ?", (cutoff,)
    ).fetchall()
    ops.expire_holds(conn, stale)
    removed += conn.execute("DELETE FROM holds WHERE expires_at < ?", (cutoff,)).rowcount
    removed += conn.execute(
        "DELETE FROM workflows WHERE MAX(last_seen_at, COALESCE(completed_at, 0)) < ?",
        (cutoff,),
    ).rowcount
    removed += conn.execute("DELETE FROM key_periods WHERE period_end < ?", (cutoff,)).rowcount
    return removed
