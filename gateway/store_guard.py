"""The store as the gateway uses it: every failure counted and logged, by operation.

``ObservedStore`` wraps any ``Store``: a failed operation (unreachable, paused, full,
wedged, reset) adds to ``spendgate_store_errors_total{operation}`` and is logged (the
first failure of an operation at once, then at most one line per
``LOG_EVERY_S`` with the count in between), then raises as before, so the alert
on store errors fires and the log tells why. Nothing else changes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from accounting.errors import AccountingError, BudgetExceeded, GuardrailRefused
from accounting.limits import Admission, KeyLimits, Limiter
from accounting.store.base import (
    Charge,
    IdemClaim,
    KeySpend,
    Outcome,
    Reservation,
    Reserved,
    ReserveRequest,
    Settled,
    Store,
    WorkflowState,
)
from gateway.telemetry import logging as log
from gateway.telemetry import metrics

T = TypeVar("T")
LOG_EVERY_S = 5.0


class ObservedStore:
    """See the module docstring; ``inner`` is the real store."""

    def __init__(self, inner: Store, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self._clock = clock
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    async def _run(self, operation: str, pending: Awaitable[T]) -> T:
        try:
            return await pending
        except (BudgetExceeded, GuardrailRefused):  # answers, not failures
            raise
        except AccountingError as exc:
            self.failed(operation, exc)
            raise

    def failed(self, operation: str, exc: Exception) -> None:
        metrics.child(metrics.STORE_ERRORS, operation).inc()
        now = self._clock()
        if now - self._last_logged.get(operation, -LOG_EVERY_S) < LOG_EVERY_S:
            self._suppressed[operation] = self._suppressed.get(operation, 0) + 1
            return
        self._last_logged[operation] = now
        log.event(
            "store_operation_failed",
            level=40,
            operation=operation,
            error=type(exc).__name__,
            message=str(exc),
            failures_not_logged=self._suppressed.pop(operation, 0),
        )

    async def open(self) -> None:
        await self._run("open", self.inner.open())

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self._run("ping", self.inner.ping())

    async def check(self, now: float) -> None:
        await self._run("check", self.inner.check(now))

    def reset_info(self) -> dict[str, object] | None:
        return self.inner.reset_info()

    def limiter(self) -> Limiter:
        return ObservedLimiter(self.inner.limiter(), self)

    async def accept_reset(self, now: float) -> None:
        await self._run("accept_reset", self.inner.accept_reset(now))

    async def reserve(self, req: ReserveRequest) -> Reserved:
        return await self._run("reserve", self.inner.reserve(req))

    async def settle(self, res: Reservation, charge: Charge, now: float) -> Settled:
        return await self._run("settle", self.inner.settle(res, charge, now))

    async def get_workflow(self, key: str, workflow_id: str, now: float) -> WorkflowState | None:
        return await self._run("get_workflow", self.inner.get_workflow(key, workflow_id, now))

    async def complete_workflow(
        self,
        key: str,
        workflow_id: str,
        now: float,
        outcome: Outcome = "succeeded",
        error: str | None = None,
    ) -> WorkflowState | None:
        pending = self.inner.complete_workflow(key, workflow_id, now, outcome, error)
        return await self._run("complete_workflow", pending)

    async def cancel_workflow(
        self, key: str, workflow_id: str, now: float, reason: str = "cancelled"
    ) -> WorkflowState | None:
        pending = self.inner.cancel_workflow(key, workflow_id, now, reason)
        return await self._run("cancel_workflow", pending)

    async def heartbeat(
        self, key: str, workflow_id: str, now: float, step: str | None, progress: float | None
    ) -> WorkflowState | None:
        pending = self.inner.heartbeat(key, workflow_id, now, step, progress)
        return await self._run("heartbeat", pending)

    async def list_workflows(
        self, key: str, status: str, idle_before: float, after: str | None, limit: int
    ) -> tuple[list[WorkflowState], str | None]:
        pending = self.inner.list_workflows(key, status, idle_before, after, limit)
        return await self._run("list_workflows", pending)

    async def cancelled_among(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        return await self._run("cancelled_among", self.inner.cancelled_among(pairs))

    async def note_completed_cost(self, name: str, cost_micros: int, now: float) -> None:
        pending = self.inner.note_completed_cost(name, cost_micros, now)
        await self._run("note_completed_cost", pending)

    async def kind_medians(self) -> dict[str, int]:
        return await self._run("kind_medians", self.inner.kind_medians())

    async def set_workflow_cap(
        self, key: str, workflow_id: str, cap_micros: int | None, cap_tokens: int | None, now: float
    ) -> WorkflowState | None:
        pending = self.inner.set_workflow_cap(key, workflow_id, cap_micros, cap_tokens, now)
        return await self._run("set_workflow_cap", pending)

    async def list_stalled(self, idle_before: float, limit: int = 100) -> list[WorkflowState]:
        return await self._run("list_stalled", self.inner.list_stalled(idle_before, limit))

    async def count_stalled(self, idle_before: float) -> int:
        return await self._run("count_stalled", self.inner.count_stalled(idle_before))

    async def key_spend(self, key: str, period_s: int, now: float) -> KeySpend:
        return await self._run("key_spend", self.inner.key_spend(key, period_s, now))

    async def idem_claim(
        self, key: str, scope: str, fingerprint: str, lease_s: float, now: float
    ) -> IdemClaim:
        pending = self.inner.idem_claim(key, scope, fingerprint, lease_s, now)
        return await self._run("idem_claim", pending)

    async def idem_complete(
        self, key: str, scope: str, token: str, record: bytes, ttl_s: float, now: float
    ) -> bool:
        pending = self.inner.idem_complete(key, scope, token, record, ttl_s, now)
        return await self._run("idem_complete", pending)

    async def idem_release(self, key: str, scope: str, token: str) -> None:
        await self._run("idem_release", self.inner.idem_release(key, scope, token))

    async def sweep(self, now: float) -> int:
        return await self._run("sweep", self.inner.sweep(now))


class ObservedLimiter:
    """A store's limiter whose failures are counted like the store's own."""

    def __init__(self, inner: Limiter, store: ObservedStore) -> None:
        self.inner = inner
        self._store = store

    async def admit(
        self, key: str, limits: KeyLimits, tokens: int, lease: str, lease_until: float, now: float
    ) -> Admission:
        pending = self.inner.admit(key, limits, tokens, lease, lease_until, now)
        return await self._store._run("rate_admit", pending)

    async def release(
        self, key: str, limits: KeyLimits, lease: str, unused_tokens: int, now: float
    ) -> None:
        await self._store._run(
            "rate_release", self.inner.release(key, limits, lease, unused_tokens, now)
        )
