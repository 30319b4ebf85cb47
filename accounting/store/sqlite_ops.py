"""Synchronous SQLite operations behind ``SqliteStore``: schema and budget transactions.

Every function here runs on the store's single worker thread, inside a savepoint of a
``BEGIN IMMEDIATE`` transaction (``sqlite_batch``), so a check and the hold it guards
are one atomic step.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, TypeVar

from accounting.errors import BudgetExceeded
from accounting.store.base import Charge, Reservation, Reserved, ReserveRequest, WorkflowState
from accounting.store.common import (
    check_key,
    check_workflow,
    counted_tokens,
    lowered,
    period_start,
    tokens_json,
)

T = TypeVar("T")
Wf = dict[str, Any]

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS workflows (
    key TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    cap_micros INTEGER,
    cap_tokens INTEGER,
    spent_micros INTEGER NOT NULL DEFAULT 0,
    reserved_micros INTEGER NOT NULL DEFAULT 0,
    tokens_spent INTEGER NOT NULL DEFAULT 0,
    tokens_reserved INTEGER NOT NULL DEFAULT 0,
    tokens_by_kind TEXT NOT NULL DEFAULT '{}',
    calls INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    fallbacks INTEGER NOT NULL DEFAULT 0,
    partial_streams INTEGER NOT NULL DEFAULT 0,
    expired_holds INTEGER NOT NULL DEFAULT 0,
    expired_micros INTEGER NOT NULL DEFAULT 0,
    started_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    step TEXT,
    status TEXT NOT NULL DEFAULT 'running',
    completed_at REAL,
    PRIMARY KEY (key, workflow_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS workflows_by_status ON workflows (status, last_seen_at);
CREATE TABLE IF NOT EXISTS holds (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    workflow_id TEXT,
    amount_micros INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    period_start INTEGER,
    expires_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'held'
);
CREATE INDEX IF NOT EXISTS holds_by_workflow ON holds (key, workflow_id, expires_at);
CREATE INDEX IF NOT EXISTS holds_by_period ON holds (key, period_start, expires_at);
CREATE INDEX IF NOT EXISTS holds_by_expiry ON holds (expires_at);
CREATE TABLE IF NOT EXISTS key_periods (
    key TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    period_end INTEGER NOT NULL,
    spent_micros INTEGER NOT NULL DEFAULT 0,
    reserved_micros INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key, period_start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spend_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    reservation_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    key TEXT NOT NULL,
    workflow_id TEXT,
    model TEXT NOT NULL,
    cost_micros INTEGER NOT NULL,
    tokens TEXT NOT NULL,
    partial INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    token TEXT,
    lease_until REAL,
    record BLOB,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency (expires_at);
"""

WF_COLUMNS = (
    "key", "workflow_id", "cap_micros", "cap_tokens", "spent_micros", "reserved_micros",
    "tokens_spent", "tokens_reserved", "tokens_by_kind", "calls", "retries", "fallbacks",
    "partial_streams", "expired_holds", "expired_micros", "started_at", "last_seen_at",
    "step", "status", "completed_at",
)  # fmt: skip
_SELECT_WF = f"SELECT {', '.join(WF_COLUMNS)} FROM workflows"
_SAVE_WF = (
    f"INSERT OR REPLACE INTO workflows ({', '.join(WF_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in WF_COLUMNS)})"
)


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        conn.close()
        raise RuntimeError(f"{path}: schema version {version} is newer than this build")
    conn.executescript(f"BEGIN IMMEDIATE;{SCHEMA}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;")
    return conn


# -- workflow rows -----------------------------------------------------------------
def load_wf(conn: sqlite3.Connection, key: str, workflow_id: str) -> Wf | None:
    row = conn.execute(f"{_SELECT_WF} WHERE key = ? AND workflow_id = ?", (key, workflow_id))
    found = row.fetchone()
    return _wf_from_row(found) if found is not None else None


def _wf_from_row(row: sqlite3.Row) -> Wf:
    wf = {col: row[col] for col in WF_COLUMNS}
    wf["tokens_by_kind"] = json.loads(wf["tokens_by_kind"])
    return wf


def save_wf(conn: sqlite3.Connection, wf: Wf) -> None:
    values = [wf[col] for col in WF_COLUMNS]
    values[WF_COLUMNS.index("tokens_by_kind")] = tokens_json(wf["tokens_by_kind"])
    conn.execute(_SAVE_WF, values)


def to_state(wf: Wf) -> WorkflowState:
    return WorkflowState(**{**wf, "tokens_by_kind": dict(wf["tokens_by_kind"])})


def get_state(conn: sqlite3.Connection, key: str, workflow_id: str | None) -> WorkflowState | None:
    if workflow_id is None:
        return None
    wf = load_wf(conn, key, workflow_id)
    return to_state(wf) if wf is not None else None


def select_stalled(conn: sqlite3.Connection, idle_before: float, limit: int) -> list[WorkflowState]:
    rows = conn.execute(
        f"{_SELECT_WF} WHERE status = 'running' AND last_seen_at < ? ORDER BY last_seen_at LIMIT ?",
        (idle_before, limit),
    )
    return [to_state(_wf_from_row(row)) for row in rows]


def _new_wf(req: ReserveRequest, workflow_id: str) -> Wf:
    wf: Wf = {col: 0 for col in WF_COLUMNS}
    wf.update(
        key=req.key, workflow_id=workflow_id, cap_micros=req.cap_micros,
        cap_tokens=req.cap_tokens, tokens_by_kind={}, started_at=req.now,
        last_seen_at=req.now, step=req.step, status="running", completed_at=None,
    )  # fmt: skip
    return wf


# -- holds -------------------------------------------------------------------------
def expire_holds(conn: sqlite3.Connection, holds: list[sqlite3.Row]) -> None:
    """Count each expired hold as spent at its held amount (its replica is gone)."""
    for h in holds:
        amount, tokens = h["amount_micros"], h["tokens"]
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


def _sweep_for(
    conn: sqlite3.Connection, key: str, workflow_id: str | None, pstart: int | None, now: float
) -> None:
    holds = conn.execute(
        "SELECT * FROM holds WHERE state = 'held' AND expires_at <= ?1 AND key = ?2 "
        "AND workflow_id = ?3 UNION SELECT * FROM holds WHERE state = 'held' "
        "AND expires_at <= ?1 AND key = ?2 AND period_start = ?4",
        (now, key, workflow_id, pstart),
    ).fetchall()
    expire_holds(conn, holds)


def _touch_wf(conn: sqlite3.Connection, req: ReserveRequest, workflow_id: str) -> Wf:
    wf = load_wf(conn, req.key, workflow_id)
    if wf is None:
        return _new_wf(req, workflow_id)
    wf["cap_micros"] = lowered(wf["cap_micros"], req.cap_micros)
    wf["cap_tokens"] = lowered(wf["cap_tokens"], req.cap_tokens)
    if req.step is not None:
        wf["step"] = req.step
    wf["last_seen_at"] = req.now
    return wf


def _key_period(conn: sqlite3.Connection, key: str, pstart: int, period_s: int) -> int:
    """Spent + reserved of the key's window, creating the window row if needed."""
    conn.execute(
        "INSERT OR IGNORE INTO key_periods (key, period_start, period_end) VALUES (?, ?, ?)",
        (key, pstart, pstart + period_s),
    )
    row = conn.execute(
        "SELECT spent_micros + reserved_micros FROM key_periods WHERE key = ? AND period_start = ?",
        (key, pstart),
    ).fetchone()
    return int(row[0])


def reserve(conn: sqlite3.Connection, req: ReserveRequest, rid: str) -> Reserved | BudgetExceeded:
    """Sweep, create/update the workflow, check, hold. A refusal is returned (not
    raised) so the workflow creation and the sweep are still committed."""
    kb = req.key_budget
    pstart = period_start(req.now, kb.period_s) if kb is not None else None
    _sweep_for(conn, req.key, req.workflow_id, pstart, req.now)
    wf = _touch_wf(conn, req, req.workflow_id) if req.workflow_id is not None else None
    refusal = None
    if wf is not None:
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
        rid, req.key, req.workflow_id, req.amount_micros, req.tokens, pstart, req.now + req.lease_s
    )
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


def settle(
    conn: sqlite3.Connection, res: Reservation, charge: Charge, now: float
) -> WorkflowState | None:
    hold = conn.execute("SELECT * FROM holds WHERE id = ?", (res.id,)).fetchone()
    if hold is None:  # settled before (or never held): nothing changes
        return get_state(conn, res.key, res.workflow_id)
    held = hold["state"] == "held"
    amount, tokens = hold["amount_micros"], hold["tokens"]
    wf = load_wf(conn, hold["key"], hold["workflow_id"]) if hold["workflow_id"] else None
    if wf is not None:
        if held:
            wf["reserved_micros"] -= amount
            wf["tokens_reserved"] -= tokens
        else:  # swept as expired: undo the estimate, the actual charge replaces it
            wf["spent_micros"] -= amount
            wf["tokens_spent"] -= tokens
            wf["expired_micros"] -= amount
        _apply_charge(wf, charge, now)
        save_wf(conn, wf)
    if hold["period_start"] is not None:
        conn.execute(
            "UPDATE key_periods SET reserved_micros = reserved_micros - ?1, "
            "spent_micros = spent_micros - ?2 + ?3 WHERE key = ?4 AND period_start = ?5",
            (amount if held else 0, 0 if held else amount, charge.cost_micros, hold["key"],
             hold["period_start"]),
        )  # fmt: skip
    conn.execute("DELETE FROM holds WHERE id = ?", (res.id,))
    conn.execute(
        "INSERT INTO spend_log (ts, reservation_id, request_id, key, workflow_id, model, "
        "cost_micros, tokens, partial) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (now, res.id, charge.request_id, hold["key"], hold["workflow_id"], charge.model,
         charge.cost_micros, tokens_json(charge.tokens), int(charge.partial)),
    )  # fmt: skip
    return to_state(wf) if wf is not None else None


def _apply_charge(wf: Wf, charge: Charge, now: float) -> None:
    wf["spent_micros"] += charge.cost_micros
    wf["tokens_spent"] += counted_tokens(charge.tokens)
    by_kind: dict[str, int] = wf["tokens_by_kind"]
    for kind, count in charge.tokens.items():
        by_kind[kind] = by_kind.get(kind, 0) + int(count)
    wf["calls"] += int(charge.sent)
    wf["retries"] += int(charge.is_retry)
    wf["fallbacks"] += int(charge.is_fallback)
    wf["partial_streams"] += int(charge.partial)
    wf["last_seen_at"] = now
