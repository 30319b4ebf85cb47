"""Builders shared by the store contract tests."""

from __future__ import annotations

from typing import Any

from accounting.store.base import Charge, KeyBudget, ReserveRequest

NOW = 1_700_000_000.0  # an arbitrary injected clock
HOUR = 3600


def rq(
    amount: int = 100,
    *,
    workflow_id: str | None = "wf-1",
    key: str = "team-a",
    tokens: int = 10,
    lease_s: float = 60.0,
    now: float = NOW,
    **kwargs: Any,
) -> ReserveRequest:
    return ReserveRequest(
        key=key,
        workflow_id=workflow_id,
        amount_micros=amount,
        tokens=tokens,
        lease_s=lease_s,
        now=now,
        **kwargs,
    )


def budget(limit: int, period_s: int = HOUR) -> KeyBudget:
    return KeyBudget(limit_micros=limit, period_s=period_s)


def charge(cost: int, **kwargs: Any) -> Charge:
    return Charge(cost_micros=cost, **kwargs)
