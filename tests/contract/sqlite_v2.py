"""A version-2 SQLite store file, as the previous release wrote it (its schema
verbatim), for the migration test."""

from __future__ import annotations

import sqlite3

V2_SCHEMA = """
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
CREATE INDEX IF NOT EXISTS holds_by_state ON holds (state, expires_at);
CREATE INDEX IF NOT EXISTS held_by_workflow ON holds (key, workflow_id, expires_at)
    WHERE state = 'held';
CREATE INDEX IF NOT EXISTS held_by_period ON holds (key, period_start, expires_at)
    WHERE state = 'held';
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
    partial INTEGER NOT NULL,
    rule TEXT NOT NULL DEFAULT 'reported'
);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT NOT NULL,
    scope TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    token TEXT,
    lease_until REAL,
    record BLOB,
    expires_at REAL NOT NULL,
    PRIMARY KEY (key, scope)
);
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency (expires_at);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""


def write_v2(path: str) -> None:
    """A v2 file with a running workflow (one live hold, a step), a completed one, a
    ledger row and an idempotency record."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(f"BEGIN;{V2_SCHEMA}PRAGMA user_version = 2;COMMIT;")
        conn.execute(
            "INSERT INTO workflows (key, workflow_id, cap_micros, spent_micros, reserved_micros, "
            "started_at, last_seen_at, step) VALUES ('team-a', 'wf-1', 1000, 300, 200, 1.0, 2.0, "
            "'plan')"
        )
        conn.execute(
            "INSERT INTO workflows (key, workflow_id, spent_micros, started_at, last_seen_at, "
            "status, completed_at) VALUES ('team-a', 'wf-done', 50, 1.0, 3.0, 'completed', 4.0)"
        )
        conn.execute(
            "INSERT INTO holds (id, key, workflow_id, amount_micros, tokens, expires_at) "
            "VALUES ('h1', 'team-a', 'wf-1', 200, 0, 4000000000.0)"
        )
        conn.execute(
            "INSERT INTO spend_log (ts, reservation_id, request_id, key, workflow_id, model, "
            "cost_micros, tokens, partial, rule) VALUES (2.0, 'h0', 'r0', 'team-a', 'wf-1', 'm', "
            "300, '{}', 0, 'reported')"
        )
        conn.execute(
            "INSERT INTO idempotency (key, scope, fingerprint, state, token, record, expires_at) "
            "VALUES ('team-a', 'chat:abc', 'fp', 'completed', 't', X'6b657074', 4000000000.0)"
        )
    finally:
        conn.close()
