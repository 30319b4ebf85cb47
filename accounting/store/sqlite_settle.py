"""Settle for the SQLite store: a hold becomes the actual charge, once.

A settled hold stays as a tombstone (``state = 'settled'``) until ``sweep`` deletes it
a workflow TTL after its lease ended, so a repeated settle (the caller retrying one
whose answer it never saw) changes nothing. A settle that finds no hold and no
tombstone is an *orphan*: the charge is applied anyway (the provider billed it) and
the workflow (with the reservation's caps) and key window (see ``ORPHAN_WINDOW_S``)
are re-created if they are gone; a tombstone is written so that repeating the orphan
settle changes nothing either. With SQLite this only happens for a hold swept away
long ago (the file loses nothing), or one the store never issued.
"""

from __future__ import annotations

import sqlite3

from accounting.store.base import Charge, Reservation, Settled
from accounting.store.common import ORPHAN_WINDOW_S, counted_tokens, tokens_json
from accounting.store.sqlite_ops import (
    Wf,
    get_state,
    int64,
    load_wf,
    new_wf,
    open_window,
    save_wf,
    to_state,
)


def settle(conn: sqlite3.Connection, res: Reservation, charge: Charge, now: float) -> Settled:
    hold = conn.execute("SELECT * FROM holds WHERE id = ?", (res.id,)).fetchone()
    if hold is None:
        return _orphan(conn, res, charge, now)
    if hold["state"] == "settled":  # settled before: nothing changes
        return Settled(get_state(conn, res.key, res.workflow_id))
    held = hold["state"] == "held"
    amount, tokens = int64(hold["amount_micros"]), int64(hold["tokens"])
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
    conn.execute("UPDATE holds SET state = 'settled' WHERE id = ?", (res.id,))
    _ledger(conn, res, charge, now)
    return Settled(to_state(wf) if wf is not None else None)


def _orphan(conn: sqlite3.Connection, res: Reservation, charge: Charge, now: float) -> Settled:
    wf: Wf | None = None
    if res.workflow_id is not None:
        wf = load_wf(conn, res.key, res.workflow_id)
        if wf is None:
            wf = new_wf(res.key, res.workflow_id, res.cap_micros, res.cap_tokens, now)
        _apply_charge(wf, charge, now)
        save_wf(conn, wf)
    if res.period_start is not None:
        open_window(conn, res.key, res.period_start, res.period_start + ORPHAN_WINDOW_S)
        conn.execute(
            "UPDATE key_periods SET spent_micros = spent_micros + ? "
            "WHERE key = ? AND period_start = ?",
            (charge.cost_micros, res.key, res.period_start),
        )
    conn.execute(
        "INSERT INTO holds (id, key, workflow_id, amount_micros, tokens, period_start, "
        "expires_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, 'settled')",
        (res.id, res.key, res.workflow_id, res.amount_micros, res.tokens, res.period_start,
         max(res.expires_at, now)),
    )  # fmt: skip
    _ledger(conn, res, charge, now)
    return Settled(to_state(wf) if wf is not None else None, orphan=True)


def _ledger(conn: sqlite3.Connection, res: Reservation, charge: Charge, now: float) -> None:
    conn.execute(
        "INSERT INTO spend_log (ts, reservation_id, request_id, key, workflow_id, model, "
        "cost_micros, tokens, partial, rule) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (now, res.id, charge.request_id, res.key, res.workflow_id, charge.model,
         charge.cost_micros, tokens_json(charge.tokens), int(charge.partial), charge.rule),
    )  # fmt: skip


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
