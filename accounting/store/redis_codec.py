"""Small conversions of ``RedisStore``: tenant names, numbers as script arguments, and
script replies back into ``WorkflowState`` and ``BudgetExceeded``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from accounting.errors import BudgetExceeded
from accounting.store.base import ReserveRequest, WorkflowState


def tenant_of(key: str) -> str:
    """The gateway key, escaped so it holds no ``:`` and no hash-tag braces."""
    return key.replace("%", "%25").replace("{", "%7B").replace("}", "%7D").replace(":", "%3A")


def f(value: float) -> str:
    return repr(float(value))


def opt(value: int | None) -> str:
    return "" if value is None else str(value)


def ttl(seconds: float) -> int:
    return max(1, math.ceil(seconds))


def state(
    key: str, workflow_id: str, found: Sequence[bytes] | dict[bytes, bytes]
) -> WorkflowState | None:
    if not found:
        return None
    if isinstance(found, dict):
        fields = {k.decode(): v for k, v in found.items()}
    else:
        fields = {found[i].decode(): found[i + 1] for i in range(0, len(found), 2)}

    def count(name: str) -> int:
        return int(fields.get(name, b"0"))

    def optional(name: str) -> bytes | None:
        return fields.get(name)

    cap_micros, cap_tokens, step = optional("cap_micros"), optional("cap_tokens"), optional("step")
    completed_at = optional("completed_at")
    return WorkflowState(
        key=key, workflow_id=workflow_id,
        cap_micros=None if cap_micros is None else int(cap_micros),
        cap_tokens=None if cap_tokens is None else int(cap_tokens),
        spent_micros=count("spent_micros"), reserved_micros=count("reserved_micros"),
        tokens_spent=count("tokens_spent"), tokens_reserved=count("tokens_reserved"),
        tokens_by_kind={k[3:]: int(v) for k, v in fields.items() if k.startswith("tk:")},
        calls=count("calls"), retries=count("retries"), fallbacks=count("fallbacks"),
        partial_streams=count("partial_streams"), expired_holds=count("expired_holds"),
        expired_micros=count("expired_micros"), started_at=float(fields["started_at"]),
        last_seen_at=float(fields["last_seen_at"]),
        step=None if step is None else step.decode(),
        status="completed" if fields.get("status") == b"completed" else "running",
        completed_at=None if completed_at is None else float(completed_at),
    )  # fmt: skip


def refusal(
    outcome: str, found: WorkflowState | None, req: ReserveRequest, reply: list[Any]
) -> BudgetExceeded:
    if outcome == "key" and req.key_budget is not None:
        committed = int(reply[2]) + int(reply[3])
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
