"""Synchronous SQLite operations behind ``SqliteStore``: workflow rows, hold expiry and
reserve (``sqlite_settle`` has the settle).

Every function here runs on the store's single worker thread, inside a savepoint of a
``BEGIN IMMEDIATE`` transaction (``sqlite_batch``), so a check and the hold it guards
are one atomic step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from accounting.errors import AccountingError
from accounting.store import sqlite_guards as guards
from accounting.store.base import Reservation, Reserved, ReserveRequest, WorkflowState
from accounting.store.common import (
    INT64_MAX,
    OUTCOMES,
    check_key,
    check_workflow,
    lowered,
    period_start,
    stored_float,
    stored_int,
    tokens_json,
)
from accounting.store.guardrails import refused

Wf = dict[str, Any]

# The columns of ``WorkflowState``, then the row's own bookkeeping (``fingerprints``:
# how many ``workflow_calls`` rows the workflow has, for the loop guard's bound).
STATE_COLUMNS = (
    "key", "workflow_id", "cap_micros", "cap_tokens", "spent_micros", "reserved_micros",
    "tokens_spent", "tokens_reserved", "tokens_by_kind", "calls", "retries", "fallbacks",
    "partial_streams", "expired_holds", "expired_micros", "started_at", "last_seen_at",
    "step", "status", "completed_at", "deadline_at", "max_calls", "requests", "name",
    "cancelled_at", "stop_reason", "outcome", "error", "progress", "heartbeat_at",
)  # fmt: skip
WF_COLUMNS = (*STATE_COLUMNS, "fingerprints")
SELECT_WF = f"SELECT {', '.join(WF_COLUMNS)} FROM workflows"
# An upsert, not INSERT OR REPLACE: an existing row is updated in place, where a
# replace deletes it and inserts it again, rewriting every index entry twice.
_SAVE_WF = (
    f"INSERT INTO workflows ({', '.join(WF_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in WF_COLUMNS)}) ON CONFLICT (key, workflow_id) DO UPDATE SET "
    + ", ".join(f"{col} = excluded.{col}" for col in WF_COLUMNS[2:])
)


# -- workflow rows -----------------------------------------------------------------
def load_wf(conn: sqlite3.Connection, key: str, workflow_id: str) -> Wf | None:
    row = conn.execute(f"{SELECT_WF} WHERE key = ? AND workflow_id = ?", (key, workflow_id))
    found = row.fetchone()
    return wf_from_row(found) if found is not None else None


_CAPS = ("cap_micros", "cap_tokens", "max_calls")  # NULL: no cap
_COUNTS = (
    "spent_micros", "reserved_micros", "tokens_spent", "tokens_reserved", "calls", "retries",
    "fallbacks", "partial_streams", "expired_holds", "expired_micros", "requests",
    "fingerprints",
)  # fmt: skip
_FLOATS = ("completed_at", "deadline_at", "cancelled_at", "progress", "heartbeat_at")  # or NULL
_TEXTS = ("step", "name", "stop_reason", "error")  # or NULL
_STATUSES = ("running", "completed", "cancelled")


def int64(raw: object) -> int:
    """A stored integer (see ``stored_int``) clamped to what SQLite can store: a value
    that overflowed into a REAL, or text, reads back as an int that can be written
    back, so one bad row never makes its workflow unwritable."""
    if type(raw) is int and -INT64_MAX <= raw <= INT64_MAX:  # what is nearly always there
        return raw
    return max(-INT64_MAX, min(INT64_MAX, stored_int(raw)))


def wf_from_row(row: sqlite3.Row) -> Wf:
    """A workflow row, whatever its columns hold (see ``int64``, ``stored_float``)."""
    wf = dict(zip(WF_COLUMNS, row, strict=True))
    for col in _COUNTS:
        wf[col] = int64(wf[col])
    for col in _CAPS:
        if wf[col] is not None:
            wf[col] = int64(wf[col])
    wf.update({col: stored_float(wf[col]) for col in ("started_at", "last_seen_at")})
    wf.update({col: stored_float(wf[col]) for col in _FLOATS if wf[col] is not None})
    wf.update({col: str(wf[col]) for col in _TEXTS if wf[col] is not None})
    wf["tokens_by_kind"] = _kinds(wf["tokens_by_kind"])
    wf["status"] = wf["status"] if wf["status"] in _STATUSES else "running"
    wf["outcome"] = wf["outcome"] if wf["outcome"] in OUTCOMES else None
    return wf


def _kinds(raw: object) -> dict[str, int]:
    """``tokens_by_kind`` as stored (JSON); anything but a JSON object reads as {}."""
    if not isinstance(raw, str | bytes):
        return {}
    try:
        found = orjson.loads(raw)
    except orjson.JSONDecodeError:  # not JSON: the counts by kind are lost, the row stays readable
        found = None
    if not isinstance(found, dict):
        return {}
    return {str(kind): int64(count) for kind, count in found.items()}


def save_wf(conn: sqlite3.Connection, wf: Wf) -> None:
    """Write the row back; counters beyond 64 bits saturate rather than fail (caps are
    checked by the store before any write, ``validate_caps``)."""
    row = dict(wf)
    for col in _COUNTS:
        row[col] = int64(row[col])
    row["tokens_by_kind"] = tokens_json({k: int64(v) for k, v in wf["tokens_by_kind"].items()})
    conn.execute(_SAVE_WF, [row[col] for col in WF_COLUMNS])


def to_state(wf: Wf) -> WorkflowState:
    state = {col: wf[col] for col in STATE_COLUMNS}
    return WorkflowState(**{**state, "tokens_by_kind": dict(wf["tokens_by_kind"])})


def get_state(conn: sqlite3.Connection, key: str, workflow_id: str | None) -> WorkflowState | None:
    if workflow_id is None:
        return None
    wf = load_wf(conn, key, workflow_id)
    return to_state(wf) if wf is not None else None


def select_stalled(conn: sqlite3.Connection, idle_before: float, limit: int) -> list[WorkflowState]:
    rows = conn.execute(
        f"{SELECT_WF} WHERE status = 'running' AND last_seen_at < ? ORDER BY last_seen_at LIMIT ?",
        (idle_before, limit),
    )
    return [to_state(wf_from_row(row)) for row in rows]


def new_wf(
    key: str, workflow_id: str, cap_micros: int | None, cap_tokens: int | None, now: float
) -> Wf:
    wf: Wf = {col: 0 if col in _COUNTS else None for col in WF_COLUMNS}
    wf.update(
        key=key, workflow_id=workflow_id, cap_micros=cap_micros, cap_tokens=cap_tokens,
        tokens_by_kind={}, started_at=now, last_seen_at=now, status="running",
    )  # fmt: skip
    return wf


# -- holds -------------------------------------------------------------------------
# Live holds due by ?1: held_by_* and holds_by_state serve it, never walking tombstones.
_HELD = "SELECT * FROM holds WHERE state = 'held' AND expires_at <= ?1"


def expire_holds(conn: sqlite3.Connection, holds: Sequence[sqlite3.Row]) -> int:
    """Count each expired hold as spent at its held amount (its replica is gone), in
    its workflow and in the key window it was held against; how many there were."""
    for h in holds:
        amount, tokens = int64(h["amount_micros"]), int64(h["tokens"])
        if h["workflow_id"] is not None:
            conn.execute(
                "UPDATE workflows SET spent_micros = spent_micros + ?1, "
                "reserved_micros = reserved_micros - ?1, tokens_spent = tokens_spent + ?2, "
                "tokens_reserved = tokens_reserved - ?2, expired_holds = expired_holds + 1, "
                "expired_micros = expired_micros + ?1 WHERE key = ?3 AND workflow_id = ?4",
                (amount, tokens, h["key"], h["workflow_id"]),
            )
        if h["period_start"] is not None:
            conn.execute(
                "UPDATE key_periods SET spent_micros = spent_micros + ?1, "
                "reserved_micros = reserved_micros - ?1 WHERE key = ?2 AND period_start = ?3",
                (amount, h["key"], h["period_start"]),
            )
        conn.execute("UPDATE holds SET state = 'expired' WHERE id = ?", (h["id"],))
    return len(holds)


def sweep_workflow(conn: sqlite3.Connection, key: str, workflow_id: str, now: float) -> int:
    """Expire the workflow's holds whose lease ran out (before reading it); how many."""
    sql = f"{_HELD} AND key = ?2 AND workflow_id = ?3"
    return expire_holds(conn, conn.execute(sql, (now, key, workflow_id)).fetchall())


def sweep_due(conn: sqlite3.Connection, now: float) -> int:
    """Expire every hold whose lease ran out, whatever its workflow or key."""
    return expire_holds(conn, conn.execute(_HELD, (now,)).fetchall())


def _sweep_for(
    conn: sqlite3.Connection, key: str, workflow_id: str | None, pstart: int | None, now: float
) -> None:
    holds = conn.execute(
        f"{_HELD} AND key = ?2 AND workflow_id = ?3 UNION {_HELD} AND key = ?2 "
        "AND period_start = ?4",
        (now, key, workflow_id, pstart),
    ).fetchall()
    expire_holds(conn, holds)


def _touch_wf(conn: sqlite3.Connection, req: ReserveRequest, workflow_id: str) -> Wf:
    wf = load_wf(conn, req.key, workflow_id)
    if wf is None:
        wf = new_wf(req.key, workflow_id, req.cap_micros, req.cap_tokens, req.now)
    else:
        wf["cap_micros"] = lowered(wf["cap_micros"], req.cap_micros)
        wf["cap_tokens"] = lowered(wf["cap_tokens"], req.cap_tokens)
        wf["last_seen_at"] = req.now
    if req.step is not None:
        wf["step"] = req.step
    guards.set_limits(wf, req)
    return wf


def open_window(conn: sqlite3.Connection, key: str, pstart: int, period_end: int) -> None:
    """Create the key's window row if needed (``period_end`` only decides when the
    sweep deletes it)."""
    conn.execute(
        "INSERT OR IGNORE INTO key_periods (key, period_start, period_end) VALUES (?, ?, ?)",
        (key, pstart, period_end),
    )


def _key_period(conn: sqlite3.Connection, key: str, pstart: int, period_s: int) -> int:
    """Spent + reserved of the key's window, creating the window row if needed."""
    open_window(conn, key, pstart, pstart + period_s)
    row = conn.execute(
        "SELECT spent_micros + reserved_micros FROM key_periods WHERE key = ? AND period_start = ?",
        (key, pstart),
    ).fetchone()
    return int64(row[0])


def reserve(conn: sqlite3.Connection, req: ReserveRequest, rid: str) -> Reserved | AccountingError:
    """Sweep, create/update the workflow, check (guardrails, then budgets), hold. A
    refusal (BudgetExceeded, GuardrailRefused) is returned, not raised, so the
    workflow creation and the sweep are still committed."""
    kb = req.key_budget
    pstart = period_start(req.now, kb.period_s) if kb is not None else None
    _sweep_for(conn, req.key, req.workflow_id, pstart, req.now)
    wf = _touch_wf(conn, req, req.workflow_id) if req.workflow_id is not None else None
    refusal: AccountingError | None = None
    identical = None
    if wf is not None:
        reason, identical = guards.check(conn, wf, req)
        refusal = refused(reason, to_state(wf), req, identical or 0) if reason else None
    if refusal is None and wf is not None:
        committed = wf["spent_micros"] + wf["reserved_micros"]
        committed_tokens = wf["tokens_spent"] + wf["tokens_reserved"]
        refusal = check_workflow(
            wf["cap_micros"], wf["cap_tokens"], committed, committed_tokens, req
        )
    if refusal is None and kb is not None and pstart is not None:
        refusal = check_key(kb.limit_micros, _key_period(conn, req.key, pstart, kb.period_s), req)
    if refusal is not None:
        if wf is not None:
            save_wf(conn, wf)
        return refusal
    res = Reservation(
        rid, req.key, req.workflow_id, req.amount_micros, req.tokens, pstart,
        req.now + req.lease_s, req.cap_micros, req.cap_tokens,
    )  # fmt: skip
    if wf is not None and req.new_call:
        guards.count_call(conn, wf, req, identical)
    _hold(conn, res, wf)
    return Reserved(res, to_state(wf) if wf is not None else None)


def _hold(conn: sqlite3.Connection, res: Reservation, wf: Wf | None) -> None:
    conn.execute(
        "INSERT INTO holds (id, key, workflow_id, amount_micros, tokens, period_start, "
        "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (res.id, res.key, res.workflow_id, res.amount_micros, res.tokens, res.period_start,
         res.expires_at),
    )  # fmt: skip
    if wf is not None:
        wf["reserved_micros"] += res.amount_micros
        wf["tokens_reserved"] += res.tokens
        save_wf(conn, wf)
    if res.period_start is not None:
        conn.execute(
            "UPDATE key_periods SET reserved_micros = reserved_micros + ? "
            "WHERE key = ? AND period_start = ?",
            (res.amount_micros, res.key, res.period_start),
        )
