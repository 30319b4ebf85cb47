"""Synchronous SQLite operations behind ``SqliteStore`` for a workflow's life off the
money path: completion, cancellation, heartbeats, the paged listing, the cancel poll,
and the costs of completed workflows by kind.

Like ``sqlite_ops`` each runs on the store's worker thread; those that write (and the
reads that sweep first) run inside a savepoint of a batched transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict

from accounting.store import sqlite_ops as ops
from accounting.store.base import WorkflowState
from accounting.store.common import KIND_COSTS_KEPT
from accounting.store.guardrails import median


def complete(
    conn: sqlite3.Connection, key: str, wid: str, now: float, outcome: str, error: str | None
) -> WorkflowState | None:
    """Running -> completed with its outcome; a cancelled workflow stays cancelled and
    records the outcome (and completion time) if it has none; otherwise nothing."""
    ops.sweep_workflow(conn, key, wid, now)
    wf = ops.load_wf(conn, key, wid)
    if wf is None:
        return None
    if wf["status"] == "running":
        wf.update(status="completed", completed_at=now, outcome=outcome, error=error)
        ops.save_wf(conn, wf)
    elif wf["status"] == "cancelled" and wf["outcome"] is None:
        wf.update(outcome=outcome, error=error)
        if wf["completed_at"] is None:
            wf["completed_at"] = now
        ops.save_wf(conn, wf)
    return ops.to_state(wf)


def cancel(
    conn: sqlite3.Connection, key: str, wid: str, now: float, reason: str
) -> WorkflowState | None:
    """The first stop sets ``stop_reason`` and ``cancelled_at`` (status ``cancelled``
    unless completed); a later one changes nothing."""
    ops.sweep_workflow(conn, key, wid, now)
    wf = ops.load_wf(conn, key, wid)
    if wf is None:
        return None
    if wf["stop_reason"] is None:
        wf.update(stop_reason=reason, cancelled_at=now)
        if wf["status"] != "completed":
            wf["status"] = "cancelled"
        ops.save_wf(conn, wf)
    return ops.to_state(wf)


def heartbeat(
    conn: sqlite3.Connection,
    key: str,
    wid: str,
    now: float,
    step: str | None,
    progress: float | None,
) -> WorkflowState | None:
    ops.sweep_workflow(conn, key, wid, now)
    wf = ops.load_wf(conn, key, wid)
    if wf is None:
        return None
    wf.update(last_seen_at=now, heartbeat_at=now)
    if step is not None:
        wf["step"] = step
    if progress is not None:
        wf["progress"] = float(progress)
    ops.save_wf(conn, wf)
    return ops.to_state(wf)


def list_page(
    conn: sqlite3.Connection,
    key: str,
    status: str,
    idle_before: float,
    after: str | None,
    limit: int,
) -> tuple[list[WorkflowState], str | None]:
    """One page by workflow id (``workflows_by_key_status``), each swept by
    ``idle_before`` (the listing has no ``now``, see ``sqlite_admin.stalled``)."""
    where = "key = ? AND status = ?"
    params: list[object] = [key, "running" if status == "stalled" else status]
    if status == "stalled":
        where, params = f"{where} AND last_seen_at < ?", [*params, idle_before]
    if after is not None:
        where, params = f"{where} AND workflow_id > ?", [*params, after]
    rows = conn.execute(
        f"{ops.SELECT_WF} WHERE {where} ORDER BY workflow_id LIMIT ?", (*params, limit + 1)
    ).fetchall()
    found = [ops.wf_from_row(row) for row in rows]
    states = []
    for wf in found[:limit]:
        if ops.sweep_workflow(conn, key, wf["workflow_id"], idle_before):
            wf = ops.load_wf(conn, key, wf["workflow_id"]) or wf
        states.append(ops.to_state(wf))
    return states, (states[-1].workflow_id if len(found) > limit else None)


# The pairs as one JSON array, each looked up by the primary key.
CANCELLED_AMONG = (
    "SELECT w.key, w.workflow_id FROM json_each(?1) AS p CROSS JOIN workflows AS w "
    "ON w.key = json_extract(p.value, '$[0]') AND w.workflow_id = json_extract(p.value, "
    "'$[1]') WHERE w.stop_reason IS NOT NULL"
)


def cancelled_among(conn: sqlite3.Connection, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """One query for any number of pairs."""
    rows = conn.execute(CANCELLED_AMONG, (json.dumps([[key, wid] for key, wid in pairs]),))
    return {(str(key), str(wid)) for key, wid in rows}


def note_cost(conn: sqlite3.Connection, name: str, cost_micros: int, now: float) -> None:
    """Append the cost and keep the kind's last ``KIND_COSTS_KEPT``."""
    conn.execute(
        "INSERT INTO kind_costs (name, cost_micros, at) VALUES (?, ?, ?)", (name, cost_micros, now)
    )
    conn.execute(
        "DELETE FROM kind_costs WHERE name = ?1 AND id <= (SELECT id FROM kind_costs "
        "WHERE name = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        (name, KIND_COSTS_KEPT),
    )


def medians(conn: sqlite3.Connection) -> dict[str, int]:
    costs: defaultdict[str, list[int]] = defaultdict(list)
    for name, cost in conn.execute("SELECT name, cost_micros FROM kind_costs"):
        costs[str(name)].append(ops.int64(cost))
    return {name: median(values) for name, values in costs.items()}
