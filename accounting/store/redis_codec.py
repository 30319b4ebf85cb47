"""Small conversions of ``RedisStore``: tenant names, numbers as script arguments, and
script replies back into ``WorkflowState`` and ``BudgetExceeded``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from accounting.errors import BudgetExceeded
from accounting.store.base import ReserveRequest, WorkflowState
from accounting.store.common import MAX_STORE_INT, stored_float, stored_int


def tenant_of(key: str) -> str:
    """The gateway key, escaped so it holds no ``:`` and no hash-tag braces."""
    return key.replace("%", "%25").replace("{", "%7B").replace("}", "%7D").replace(":", "%3A")


def f(value: float) -> str:
    return repr(float(value))


def opt(value: int | None) -> str:
    return "" if value is None else str(value)


def ttl(seconds: float) -> int:
    """Seconds as a key TTL: at least 1, at most ``MAX_STORE_INT`` (what the scripts
    take; a TTL of 285 million years is forever)."""
    return min(MAX_STORE_INT, max(1, math.ceil(seconds)))


def state(
    key: str, workflow_id: str, found: Sequence[bytes] | dict[bytes, bytes]
) -> WorkflowState | None:
    """A workflow hash as a ``WorkflowState``, whatever its fields hold: an integer of
    any size as is, anything that is no number as 0 (``stored_int``, ``stored_float``),
    so a bad field (an older version's, a hand edit's) never makes reads fail."""
    if not found:
        return None
    if isinstance(found, dict):
        pairs = list(found.items())
    else:
        pairs = [(found[i], found[i + 1]) for i in range(0, len(found) - 1, 2)]
    fields = {_text(k): v for k, v in pairs}

    def count(name: str) -> int:
        return stored_int(fields.get(name, 0))

    def optional(name: str) -> int | None:
        raw = fields.get(name)
        return None if raw is None else stored_int(raw)

    step, completed_at = fields.get("step"), fields.get("completed_at")
    return WorkflowState(
        key=key, workflow_id=workflow_id,
        cap_micros=optional("cap_micros"), cap_tokens=optional("cap_tokens"),
        spent_micros=count("spent_micros"), reserved_micros=count("reserved_micros"),
        tokens_spent=count("tokens_spent"), tokens_reserved=count("tokens_reserved"),
        tokens_by_kind={k[3:]: stored_int(v) for k, v in fields.items() if k.startswith("tk:")},
        calls=count("calls"), retries=count("retries"), fallbacks=count("fallbacks"),
        partial_streams=count("partial_streams"), expired_holds=count("expired_holds"),
        expired_micros=count("expired_micros"),
        started_at=stored_float(fields.get("started_at")),
        last_seen_at=stored_float(fields.get("last_seen_at")),
        step=None if step is None else _text(step),
        status="completed" if fields.get("status") == b"completed" else "running",
        completed_at=None if completed_at is None else stored_float(completed_at),
    )  # fmt: skip


def _text(raw: object) -> str:
    if isinstance(raw, bytes):
        return raw.decode(errors="replace")
    return str(raw)


def refusal(
    outcome: str, found: WorkflowState | None, req: ReserveRequest, reply: list[Any]
) -> BudgetExceeded:
    if outcome == "key" and req.key_budget is not None:
        committed = stored_int(reply[2]) + stored_int(reply[3])
        return BudgetExceeded(
            "key", "usd", req.key_budget.limit_micros, committed, req.amount_micros
        )
    if found is None:
        raise RuntimeError(f"unexpected reserve reply {outcome!r}")
    if outcome == "tokens" and found.cap_tokens is not None:
        committed = found.tokens_spent + found.tokens_reserved
        return BudgetExceeded("workflow", "tokens", found.cap_tokens, committed, req.tokens)
    if outcome == "workflow" and found.cap_micros is not None:
        committed = found.spent_micros + found.reserved_micros
        return BudgetExceeded("workflow", "usd", found.cap_micros, committed, req.amount_micros)
    raise RuntimeError(f"unexpected reserve reply {outcome!r}")
