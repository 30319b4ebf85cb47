"""The SQLite store's schema, its version and the migrations from older versions.

``PRAGMA user_version`` holds the version. A new file gets the current schema at once;
an older one is migrated step by step, each step in its own transaction, so a crash
half-way leaves a file at some complete version that the next open carries on from.
A file newer than this build is refused (it may hold columns this code would lose).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from accounting.store.sqlite_limits import SCHEMA as LIMITS_SCHEMA

SCHEMA_VERSION = 4

# Holds are kept after their settle (``state = 'settled'``, a tombstone: a repeated
# settle is then recognised as one) and after their expiry, until ``sweep`` deletes
# them a workflow TTL after their lease ended. The ``held_*`` indexes are partial and
# ``holds_by_state`` leads with the state, so the sweeps of reserve, reads and the
# timer only ever walk live holds, however many tombstones a long workflow leaves.
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
    deadline_at REAL,
    max_calls INTEGER,
    requests INTEGER NOT NULL DEFAULT 0,
    name TEXT,
    cancelled_at REAL,
    stop_reason TEXT,
    outcome TEXT,
    error TEXT,
    progress REAL,
    heartbeat_at REAL,
    fingerprints INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key, workflow_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS workflows_by_status ON workflows (status, last_seen_at);
CREATE INDEX IF NOT EXISTS workflows_by_key_status ON workflows (key, status, workflow_id);
CREATE TABLE IF NOT EXISTS workflow_calls (
    key TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_at REAL NOT NULL,
    last_call INTEGER NOT NULL,
    PRIMARY KEY (key, workflow_id, fingerprint)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kind_costs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    cost_micros INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS kind_costs_by_name ON kind_costs (name, id);
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

# Version 1 -> 2: the ledger names the charging rule; ``meta`` (the readiness probe's
# write); live-hold indexes made partial (settled holds are now kept as tombstones);
# idempotency records keyed by tenant and scope (the scope alone was the key).
_V1_TO_V2 = """
ALTER TABLE spend_log ADD COLUMN rule TEXT NOT NULL DEFAULT 'reported';
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
DROP INDEX IF EXISTS holds_by_workflow;
DROP INDEX IF EXISTS holds_by_period;
DROP INDEX IF EXISTS holds_by_expiry;
CREATE INDEX IF NOT EXISTS holds_by_state ON holds (state, expires_at);
CREATE INDEX IF NOT EXISTS held_by_workflow ON holds (key, workflow_id, expires_at)
    WHERE state = 'held';
CREATE INDEX IF NOT EXISTS held_by_period ON holds (key, period_start, expires_at)
    WHERE state = 'held';
ALTER TABLE idempotency RENAME TO idempotency_v1;
DROP INDEX IF EXISTS idempotency_by_expiry;
CREATE TABLE idempotency (
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
CREATE INDEX idempotency_by_expiry ON idempotency (expires_at);
"""


# Version 2 -> 3: workflow guardrails and what a workflow says of itself (deadline,
# call cap and count, name, cancellation, outcome, heartbeat; ``fingerprints`` counts
# its ``workflow_calls`` rows, the loop guard's counts), a per-key status index for
# the paged listing, and the costs of completed workflows by kind.
_V2_TO_V3 = """
ALTER TABLE workflows ADD COLUMN deadline_at REAL;
ALTER TABLE workflows ADD COLUMN max_calls INTEGER;
ALTER TABLE workflows ADD COLUMN requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workflows ADD COLUMN name TEXT;
ALTER TABLE workflows ADD COLUMN cancelled_at REAL;
ALTER TABLE workflows ADD COLUMN stop_reason TEXT;
ALTER TABLE workflows ADD COLUMN outcome TEXT;
ALTER TABLE workflows ADD COLUMN error TEXT;
ALTER TABLE workflows ADD COLUMN progress REAL;
ALTER TABLE workflows ADD COLUMN heartbeat_at REAL;
ALTER TABLE workflows ADD COLUMN fingerprints INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS workflows_by_key_status ON workflows (key, status, workflow_id);
CREATE TABLE IF NOT EXISTS workflow_calls (
    key TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_at REAL NOT NULL,
    last_call INTEGER NOT NULL,
    PRIMARY KEY (key, workflow_id, fingerprint)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kind_costs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    cost_micros INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS kind_costs_by_name ON kind_costs (name, id);
"""


def _v1_scope_key(scope: str) -> str:
    """The tenant of a version-1 record: its scope was ``<key>:<endpoint>:<digest>``."""
    parts = scope.rsplit(":", 2)
    return parts[0] if len(parts) == 3 else ""


def _migrate_v1(conn: sqlite3.Connection) -> None:
    _script(conn, _V1_TO_V2)
    rows = conn.execute("SELECT * FROM idempotency_v1").fetchall()
    conn.executemany(
        "INSERT INTO idempotency (key, scope, fingerprint, state, token, lease_until, record, "
        "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(_v1_scope_key(r["scope"]), r["scope"], r["fingerprint"], r["state"], r["token"],
          r["lease_until"], r["record"], r["expires_at"]) for r in rows],
    )  # fmt: skip
    conn.execute("DROP TABLE idempotency_v1")


def _script(conn: sqlite3.Connection, sql: str) -> None:
    for statement in sql.split(";"):
        if statement.strip():
            conn.execute(statement)


def _migrate_v2(conn: sqlite3.Connection) -> None:
    _script(conn, _V2_TO_V3)


def _migrate_v3(conn: sqlite3.Connection) -> None:
    """Version 3 -> 4: per-key rate limits (``sqlite_limits``)."""
    _script(conn, LIMITS_SCHEMA)


def _create(conn: sqlite3.Connection) -> None:
    _script(conn, SCHEMA)
    _script(conn, LIMITS_SCHEMA)


# MIGRATIONS[v] takes a file from version v to v + 1.
MIGRATIONS = {1: _migrate_v1, 2: _migrate_v2, 3: _migrate_v3}


def connect(path: str) -> sqlite3.Connection:
    """Open ``path`` (WAL, ``synchronous=NORMAL``) at the current schema version."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        _migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"{path}: schema version {version} is newer than this build")
    if version == 0:  # a new file: the current schema at once
        _step(conn, _create, SCHEMA_VERSION)
        return
    for step in range(version, SCHEMA_VERSION):
        _step(conn, MIGRATIONS[step], step + 1)


def _step(conn: sqlite3.Connection, migrate: Callable[[sqlite3.Connection], None], to: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        migrate(conn)
        conn.execute(f"PRAGMA user_version = {to}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
