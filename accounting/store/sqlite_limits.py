"""The SQLite store's per-key rate limits (``accounting.limits`` has the rules).

``rate_buckets`` keeps one row per key and limit (``rpm``, ``tpm``): the bucket's level
and when it was last changed; ``rate_leases`` one row per request in flight, with its
expiry. ``admit`` and ``release`` each run as one write of the store's writer (one
savepoint), so every worker of a ``--workers N`` gateway on the same file shares them.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from accounting.limits import ADMITTED, Admission, Bucket, KeyLimits, check

if TYPE_CHECKING:
    from accounting.store.sqlite import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_buckets (
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    level REAL NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (key, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rate_leases (
    key TEXT NOT NULL,
    lease TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (key, lease)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rate_leases_by_expiry ON rate_leases (key, expires_at);
"""


def _bucket(conn: sqlite3.Connection, key: str, name: str) -> Bucket | None:
    row = conn.execute(
        "SELECT level, at FROM rate_buckets WHERE key = ? AND name = ?", (key, name)
    ).fetchone()
    return None if row is None else Bucket(row[0], row[1])


def _save(conn: sqlite3.Connection, key: str, name: str, bucket: Bucket) -> None:
    conn.execute(
        "INSERT INTO rate_buckets (key, name, level, at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (key, name) DO UPDATE SET level = excluded.level, at = excluded.at",
        (key, name, bucket.level, bucket.at),
    )


def _live_leases(conn: sqlite3.Connection, key: str, now: float) -> int:
    conn.execute("DELETE FROM rate_leases WHERE key = ? AND expires_at <= ?", (key, now))
    row = conn.execute("SELECT COUNT(*) FROM rate_leases WHERE key = ?", (key,)).fetchone()
    return int(row[0])


def admit(
    conn: sqlite3.Connection,
    key: str,
    limits: KeyLimits,
    tokens: int,
    lease: str,
    lease_until: float,
    now: float,
) -> Admission:
    rpm = _bucket(conn, key, "rpm") if limits.rpm is not None else None
    tpm = _bucket(conn, key, "tpm") if limits.tpm is not None else None
    inflight = _live_leases(conn, key, now) if limits.max_inflight is not None else 0
    verdict = check(limits, rpm, tpm, inflight, tokens, now)
    if not verdict.admitted:
        return verdict
    if limits.rpm is not None:
        _save(conn, key, "rpm", (rpm or Bucket.full(limits.rpm, now)).take(limits.rpm, 1, now))
    if limits.tpm is not None:
        bucket = (tpm or Bucket.full(limits.tpm, now)).take(limits.tpm, tokens, now)
        _save(conn, key, "tpm", bucket)
    if limits.max_inflight is not None:
        conn.execute(
            "INSERT OR REPLACE INTO rate_leases (key, lease, expires_at) VALUES (?, ?, ?)",
            (key, lease, lease_until),
        )
    return ADMITTED


def release(
    conn: sqlite3.Connection,
    key: str,
    limits: KeyLimits,
    lease: str,
    unused_tokens: int,
    now: float,
) -> None:
    conn.execute("DELETE FROM rate_leases WHERE key = ? AND lease = ?", (key, lease))
    if limits.tpm is not None and unused_tokens:
        bucket = _bucket(conn, key, "tpm") or Bucket.full(limits.tpm, now)
        _save(conn, key, "tpm", bucket.give(limits.tpm, unused_tokens, now))


class SqliteLimiter:
    """``accounting.limits.Limiter`` on a ``SqliteStore``'s file."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def admit(
        self, key: str, limits: KeyLimits, tokens: int, lease: str, lease_until: float, now: float
    ) -> Admission:
        return await self._store.write(admit, key, limits, tokens, lease, lease_until, now)

    async def release(
        self, key: str, limits: KeyLimits, lease: str, unused_tokens: int, now: float
    ) -> None:
        await self._store.write(release, key, limits, lease, unused_tokens, now)
