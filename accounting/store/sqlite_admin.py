"""Synchronous SQLite operations behind ``SqliteStore`` off the request's money path:
workflow status, admin caps, the stalled listing, idempotency
records, the periodic sweep and the readiness probe's write.

Like ``sqlite_ops`` each runs on the store's worker thread; those that write (and the
reads that sweep first) run inside a savepoint of a batched transaction.
"""

from __future__ import annotations

import sqlite3

from accounting.store import sqlite_ops as ops
from accounting.store.base import IdemClaim, KeySpend, WorkflowState
from accounting.store.common import new_token, stored_float


def status(conn: sqlite3.Connection, key: str, wid: str, now: float) -> WorkflowState | None:
    ops.sweep_workflow(conn, key, wid, now)
    return ops.get_state(conn, key, wid)


def set_cap(
    conn: sqlite3.Connection, key: str, wid: str, cap_micros: int | None, cap_tokens: int | None
) -> WorkflowState | None:
    wf = ops.load_wf(conn, key, wid)
    if wf is None:
        return None
    wf["cap_micros"], wf["cap_tokens"] = cap_micros, cap_tokens
    ops.save_wf(conn, wf)
    return ops.to_state(wf)


def stalled(conn: sqlite3.Connection, idle_before: float, limit: int) -> list[WorkflowState]:
    """Each stalled workflow after expiring its holds whose lease ran out by
    ``idle_before`` (the listing has no ``now``; ``idle_before`` is earlier, so every
    hold expired here has truly run out; the rest wait for the next read or sweep)."""
    found = ops.select_stalled(conn, idle_before, limit)
    states = []
    for wf in found:
        ops.sweep_workflow(conn, wf.key, wf.workflow_id, idle_before)
        state = ops.get_state(conn, wf.key, wf.workflow_id)
        if state is not None:
            states.append(state)
    return states


def count_stalled(conn: sqlite3.Connection, idle_before: float) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM workflows WHERE status = 'running' AND last_seen_at < ?",
        (idle_before,),
    ).fetchone()
    return int(row[0])


def key_spend(conn: sqlite3.Connection, key: str, pstart: int) -> KeySpend:
    row = conn.execute(
        "SELECT spent_micros, reserved_micros FROM key_periods WHERE key = ? AND period_start = ?",
        (key, pstart),
    ).fetchone()
    if row is None:
        return KeySpend(key, pstart, 0, 0)
    return KeySpend(key, pstart, ops.int64(row[0]), ops.int64(row[1]))


# -- idempotency -------------------------------------------------------------------
def idem_claim(
    conn: sqlite3.Connection, key: str, scope: str, fingerprint: str, lease_s: float, now: float
) -> IdemClaim:
    row = conn.execute(
        "SELECT fingerprint, state, lease_until, record, expires_at FROM idempotency "
        "WHERE key = ? AND scope = ? AND expires_at > ?",
        (key, scope, now),
    ).fetchone()
    if row is not None:  # a completed record, or a pending one whose lease is live
        if row["fingerprint"] != fingerprint:
            return IdemClaim("conflict")
        if row["state"] == "completed":
            return IdemClaim("replay", record=bytes(row["record"]))
        return IdemClaim("in_flight", lease_until=stored_float(row["lease_until"]))
    token, lease_until = new_token(), now + lease_s
    conn.execute(
        "INSERT OR REPLACE INTO idempotency (key, scope, fingerprint, state, token, "
        "lease_until, record, expires_at) VALUES (?, ?, ?, 'pending', ?, ?, NULL, ?)",
        (key, scope, fingerprint, token, lease_until, lease_until),
    )
    return IdemClaim("claimed", token=token)


def idem_complete(
    conn: sqlite3.Connection, key: str, scope: str, token: str, record: bytes, expires_at: float
) -> bool:
    cur = conn.execute(
        "UPDATE idempotency SET state = 'completed', record = ?, lease_until = NULL, "
        "expires_at = ? WHERE key = ? AND scope = ? AND token = ? AND state = 'pending'",
        (record, expires_at, key, scope, token),
    )
    return cur.rowcount == 1


def idem_release(conn: sqlite3.Connection, key: str, scope: str, token: str) -> None:
    conn.execute(
        "DELETE FROM idempotency WHERE key = ? AND scope = ? AND token = ? AND state = 'pending'",
        (key, scope, token),
    )


# -- upkeep ------------------------------------------------------------------------
def sweep(conn: sqlite3.Connection, now: float, cutoff: float) -> int:
    """Expire every hold whose lease ran out (counted as spent), delete expired
    idempotency records, then what has been idle since before ``cutoff``: expired and
    settled holds (tombstones), workflows (with their loop guard counts), key windows
    and the costs of kinds none completed since. Returns holds expired plus rows
    deleted."""
    count = ops.sweep_due(conn, now)
    count += conn.execute("DELETE FROM idempotency WHERE expires_at <= ?", (now,)).rowcount
    count += conn.execute(
        "DELETE FROM holds WHERE state IN ('expired', 'settled') AND expires_at < ?", (cutoff,)
    ).rowcount
    idle = "MAX(last_seen_at, COALESCE(completed_at, 0), COALESCE(cancelled_at, 0)) < ?1"
    count += conn.execute(
        "DELETE FROM workflow_calls WHERE (key, workflow_id) IN "
        f"(SELECT key, workflow_id FROM workflows WHERE {idle})",
        (cutoff,),
    ).rowcount
    count += conn.execute(f"DELETE FROM workflows WHERE {idle}", (cutoff,)).rowcount
    count += conn.execute("DELETE FROM key_periods WHERE period_end < ?", (cutoff,)).rowcount
    count += conn.execute("DELETE FROM rate_leases WHERE expires_at <= ?", (now,)).rowcount
    # two windows idle: full again, so the same as no row
    count += conn.execute("DELETE FROM rate_buckets WHERE at < ?", (now - 120,)).rowcount
    count += conn.execute(
        "DELETE FROM kind_costs WHERE name IN "
        "(SELECT name FROM kind_costs GROUP BY name HAVING MAX(at) < ?)",
        (cutoff,),
    ).rowcount
    return count


def ping(conn: sqlite3.Connection, value: str) -> bool:
    """A write and its read back: a full disk or a read-only file fails here."""
    conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('ping', ?)", (value,))
    row = conn.execute("SELECT value FROM meta WHERE name = 'ping'").fetchone()
    return row is not None and row[0] == value
