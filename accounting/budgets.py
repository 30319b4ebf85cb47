"""Reserve the worst case before an upstream call, settle the truth after.

``Budgets`` is the one way the request path touches money state. A request with
neither a workflow nor a key budget holds nothing in the store (there is nothing to
enforce) and its spend goes to metrics and the access log only; everything else is
reserved atomically in the store and settled once.

A settle that cannot reach the store is never dropped: it is kept and retried in the
background (``run_retries``) until it lands, with a hook for every failure so the
gateway can count and log it. Until it lands the hold stays in the store; if this
process dies first, the hold's lease runs out and it is counted as spent at its
reserved amount, the safe side for every cap.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from accounting.errors import StoreUnavailable
from accounting.store.base import (
    Charge,
    KeyBudget,
    Reservation,
    ReserveRequest,
    Store,
    WorkflowState,
)

MAX_PENDING_SETTLES = 100_000
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose budgets a request spends from."""

    key: str
    workflow_id: str | None = None
    cap_micros: int | None = None
    cap_tokens: int | None = None
    step: str | None = None
    key_budget: KeyBudget | None = None
    timeout_s: float | None = None  # the workflow's guardrails (see ReserveRequest)
    max_calls: int | None = None
    name: str | None = None
    fingerprint: str | None = None  # for the loop guard (none with an Idempotency-Key)
    max_identical: int = 0

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


@dataclass(frozen=True, slots=True)
class SettleHooks:
    """What the gateway wants to know about settles (metrics and logs)."""

    deferred: Callable[[Reservation, Charge, StoreUnavailable, int], None] = lambda *_: None
    landed_late: Callable[[Reservation, Charge, int], None] = lambda *_: None
    dropped: Callable[[Reservation, Charge], None] = lambda *_: None
    orphan: Callable[[Reservation, Charge], None] = lambda *_: None
    refused: Callable[[Reservation, Charge, ValueError], None] = lambda *_: None


class Budgets:
    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        hooks: SettleHooks | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.hooks = hooks or SettleHooks()
        self.reserved_micros = 0  # held by this process right now (a gauge)
        self._pending: deque[tuple[Reservation, Charge, int]] = deque()
        self._wake = asyncio.Event()

    @property
    def pending_settles(self) -> int:
        return len(self._pending)

    async def reserve(
        self, scope: Scope, amount_micros: int, tokens: int, lease_s: float, new_call: bool = False
    ) -> Hold:
        """Hold ``amount_micros``/``tokens`` or raise BudgetExceeded (or a guardrail's
        GuardrailRefused); nothing is sent upstream without a hold. ``new_call``: this
        is the first attempt of a request (it counts as a workflow call)."""
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
                timeout_s=scope.timeout_s,
                max_calls=scope.max_calls,
                name=scope.name,
                new_call=new_call,
                fingerprint=scope.fingerprint,
                max_identical=scope.max_identical,
            )
        )
        self.reserved_micros += amount_micros
        return Hold(scope, amount_micros, reserved.reservation, reserved.workflow)

    async def settle(self, hold: Hold, charge: Charge) -> WorkflowState | None:
        """Replace the hold by what was really spent (once). A store failure does not
        raise: the settle is kept for ``run_retries`` and None is returned."""
        if hold.settled:
            return hold.workflow
        hold.settled = True
        if hold.reservation is None:
            return None
        self.reserved_micros -= hold.amount_micros
        try:
            hold.workflow = await self._settle(hold.reservation, charge)
        except StoreUnavailable as exc:
            self._defer(hold.reservation, charge, exc, 0)
            return None
        except ValueError as exc:  # a charge out of the store's range: the hold instead
            self.hooks.refused(hold.reservation, charge, exc)
            return await self._settle_at_hold(hold, charge)
        return hold.workflow

    async def _settle_at_hold(self, hold: Hold, charge: Charge) -> WorkflowState | None:
        assert hold.reservation is not None
        worst = replace(charge, cost_micros=hold.amount_micros, tokens={}, rule="worst_case")
        try:
            hold.workflow = await self._settle(hold.reservation, worst)
        except StoreUnavailable as exc:
            self._defer(hold.reservation, worst, exc, 0)
            return None
        return hold.workflow

    async def _settle(self, res: Reservation, charge: Charge) -> WorkflowState | None:
        settled = await self.store.settle(res, charge, self.clock())
        if settled.orphan:
            self.hooks.orphan(res, charge)
        return settled.workflow

    def _defer(self, res: Reservation, charge: Charge, exc: StoreUnavailable, tries: int) -> None:
        self.hooks.deferred(res, charge, exc, tries)
        if len(self._pending) >= MAX_PENDING_SETTLES:
            # Memory stays bounded; the hold's lease will count it as spent in full.
            old, old_charge, _ = self._pending.popleft()
            self.hooks.dropped(old, old_charge)
        self._pending.append((res, charge, tries + 1))
        self._wake.set()

    async def run_retries(self) -> None:
        """Retry deferred settles until each lands (run as a background task)."""
        wait = RETRY_FIRST_S
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(wait)
            wait = RETRY_FIRST_S if await self.retry_pending() else min(wait * 2, RETRY_MAX_S)

    async def retry_pending(self) -> bool:
        """One pass over the deferred settles; True when every one of them landed."""
        for _ in range(len(self._pending)):
            res, charge, tries = self._pending.popleft()
            try:
                await self._settle(res, charge)
            except StoreUnavailable as exc:
                self._pending.appendleft((res, charge, tries + 1))
                self.hooks.deferred(res, charge, exc, tries)
                return False
            self.hooks.landed_late(res, charge, tries)
        return True

    async def flush(self, timeout_s: float) -> int:
        """At shutdown: try the deferred settles once more; how many are left."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.retry_pending()
        except TimeoutError:
            pass
        return len(self._pending)
