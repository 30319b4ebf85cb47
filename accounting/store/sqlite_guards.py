"""The workflow guardrails of the SQLite store's reserve (see ``guardrails``): the
limits a request sets or lowers, the checks, and the loop guard's counts.

The counts live in ``workflow_calls`` (one row per workflow and fingerprint: count,
``last_at``, and ``last_call``, the workflow's ``requests`` when it was last
counted), at most ``FINGERPRINTS_KEPT`` per workflow: a new fingerprint in a full
workflow evicts the least recently counted one. A request without a fingerprint (or
with the guard off) runs no statement here.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from accounting.store.base import ReserveRequest
from accounting.store.common import FINGERPRINTS_KEPT, lowered, stored_int
from accounting.store.guardrails import counts_call, first_guardrail, is_loop

Wf = dict[str, Any]

_WHERE = "key = ?1 AND workflow_id = ?2"


def set_limits(wf: Wf, req: ReserveRequest) -> None:
    """Set or lower the deadline and the call cap; set the name once."""
    if req.timeout_s is not None:
        deadline = wf["started_at"] + req.timeout_s
        if wf["deadline_at"] is None or deadline < wf["deadline_at"]:
            wf["deadline_at"] = deadline
    wf["max_calls"] = lowered(wf["max_calls"], req.max_calls)
    if wf["name"] is None and req.name is not None:
        wf["name"] = req.name


def check(conn: sqlite3.Connection, wf: Wf, req: ReserveRequest) -> tuple[str | None, int | None]:
    """The guardrail that refuses ``req`` (or None), and the fingerprint's count so far
    (None when it is not counted, or was never counted)."""
    reason = first_guardrail(
        wf["stop_reason"], wf["deadline_at"], wf["max_calls"], wf["requests"], req
    )
    if reason is not None or not counts_call(req):
        return reason, None
    row = conn.execute(
        f"SELECT count FROM workflow_calls WHERE {_WHERE} AND fingerprint = ?3",
        (wf["key"], wf["workflow_id"], req.fingerprint),
    ).fetchone()
    identical = None if row is None else stored_int(row[0])
    return ("loop" if is_loop(identical, req) else None), identical


def count_call(conn: sqlite3.Connection, wf: Wf, req: ReserveRequest, seen: int | None) -> None:
    """A held reservation that begins a request: one more request, and one more of its
    fingerprint (``seen``: its count before, None if it has none)."""
    wf["requests"] += 1
    if not counts_call(req):
        return
    key, wid = wf["key"], wf["workflow_id"]
    if seen is None:
        if wf["fingerprints"] >= FINGERPRINTS_KEPT:
            evicted = conn.execute(
                f"DELETE FROM workflow_calls WHERE {_WHERE} AND fingerprint = (SELECT "
                f"fingerprint FROM workflow_calls WHERE {_WHERE} ORDER BY last_call LIMIT 1)",
                (key, wid),
            ).rowcount
            wf["fingerprints"] -= evicted
        wf["fingerprints"] += 1
    conn.execute(
        "INSERT INTO workflow_calls (key, workflow_id, fingerprint, count, last_at, last_call) "
        "VALUES (?1, ?2, ?3, 1, ?4, ?5) ON CONFLICT (key, workflow_id, fingerprint) DO UPDATE "
        "SET count = count + 1, last_at = ?4, last_call = ?5",
        (key, wid, req.fingerprint, req.now, wf["requests"]),
    )
