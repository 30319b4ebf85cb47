"""Reserve the worst case before an upstream call, settle the truth after.

``Budgets`` is the one way the request path touches money state. A request with
neither a workflow nor a key budget holds nothing in the store (there is nothing to
enforce) and its spend goes to metrics and the access log only; everything else is
reserved atomically in the store and settled in ``finally``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from accounting.store.base import (
    Charge,
    KeyBudget,
    Reservation,
    ReserveRequest,
    Store,
    WorkflowState,
)


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose budgets a request spends from."""

    key: str
    workflow_id: str | None = None
    cap_micros: int | None = None
    cap_tokens: int | None = None
    step: str | None = None
    key_budget: KeyBudget | None = None

    @property
    def enforced(self) -> bool:
        return self.workflow_id is not None or self.key_budget is not None


@dataclass(slots=True)
class Hold:
    scope: Scope
    amount_micros: int
    reservation: Reservation | None  # None: nothing held in the store
    workflow: WorkflowState | None
    settled: bool = False


class Budgets:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.reserved_micros = 0  # held by this process right now (a gauge)

    async def reserve(self, scope: Scope, amount_micros: int, tokens: int, lease_s: float) -> Hold:
        """Hold ``amount_micros``/``tokens`` or raise BudgetExceeded; nothing is sent
        upstream without a hold."""
        if not scope.enforced:
            return Hold(scope, amount_micros, None, None)
        reserved = await self.store.reserve(
            ReserveRequest(
                key=scope.key,
                workflow_id=scope.workflow_id,
                amount_micros=amount_micros,
                tokens=tokens,
                lease_s=lease_s,
                now=self.clock(),
                cap_micros=scope.cap_micros,
                cap_tokens=scope.cap_tokens,
                step=scope.step,
                key_budget=scope.key_budget,
            )
        )
        self.reserved_micros += amount_micros
        return Hold(scope, amount_micros, reserved.reservation, reserved.workflow)

    async def settle(self, hold: Hold, charge: Charge) -> WorkflowState | None:
        """Replace the hold by what was really spent (once)."""
        if hold.settled:
            return hold.workflow
        hold.settled = True
        if hold.reservation is None:
            return None
        self.reserved_micros -= hold.amount_micros
        hold.workflow = await self.store.settle(hold.reservation, charge, self.clock())
        return hold.workflow
