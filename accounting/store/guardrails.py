"""Workflow guardrails both stores share: which one refuses a reservation, what the
refusal says, and the median of a kind's costs.

The checks run inside each store's one atomic reserve step (SQLite: its savepoint;
Redis: the reserve script, which mirrors ``first_guardrail`` in Lua), after the
workflow was created or touched and its limits set or lowered, and before the
budgets. Order: a stop reason (``cancelled``), the deadline (``expired``: at or past
``deadline_at``), the call cap (``call_limit``), the loop guard (``loop``).
"""

from __future__ import annotations

from collections.abc import Sequence

from accounting.errors import GuardrailRefused
from accounting.store.base import ReserveRequest, WorkflowState


def counts_call(req: ReserveRequest) -> bool:
    """The request's fingerprint is checked and counted (the loop guard applies)."""
    return req.new_call and req.fingerprint is not None and req.max_identical > 0


def first_guardrail(
    stop_reason: str | None,
    deadline_at: float | None,
    max_calls: int | None,
    requests: int,
    req: ReserveRequest,
) -> str | None:
    """The first guardrail (before the loop guard, which needs its count) that refuses."""
    if stop_reason is not None:
        return "cancelled"
    if deadline_at is not None and req.now >= deadline_at:
        return "expired"
    if req.new_call and max_calls is not None and requests >= max_calls:
        return "call_limit"
    return None


def is_loop(identical: int | None, req: ReserveRequest) -> bool:
    """``identical``: how often the request's fingerprint was counted (None: never)."""
    return counts_call(req) and identical is not None and identical >= req.max_identical


def _seconds(value: float) -> float:
    """A duration for the refusal (rounded to a microsecond: unix times as doubles
    leave noise in the last digits of a difference)."""
    return round(value, 6)


def refused(
    reason: str, wf: WorkflowState, req: ReserveRequest, identical: int = 0
) -> GuardrailRefused:
    """The refusal for ``reason`` from the workflow as the reserve left it."""
    if reason == "cancelled":
        return GuardrailRefused("cancelled", detail=wf.stop_reason or "cancelled")
    if reason == "expired":
        deadline = wf.deadline_at if wf.deadline_at is not None else req.now
        limit, value = deadline - wf.started_at, req.now - wf.started_at
        return GuardrailRefused("expired", _seconds(limit), _seconds(value))
    if reason == "call_limit":
        return GuardrailRefused("call_limit", wf.max_calls, wf.requests)
    if reason == "loop":
        return GuardrailRefused("loop", req.max_identical, identical)
    raise RuntimeError(f"unknown guardrail {reason!r}")


def median(costs: Sequence[int]) -> int:
    """The median of a kind's costs; of an even count, the lower of the two middle
    ones (a cost that was really spent, in integer micro-USD)."""
    ordered = sorted(costs)
    return ordered[(len(ordered) - 1) // 2]
