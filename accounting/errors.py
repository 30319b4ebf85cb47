"""Errors the accounting layer raises; the gateway translates each once, at its edge."""

from __future__ import annotations


class AccountingError(Exception):
    """Base of every error raised by ``accounting``."""


class BudgetExceeded(AccountingError):
    """A budget cannot cover the worst case of what is about to be spent.

    ``scope`` is ``"workflow"`` or ``"key"``; ``unit`` is ``"usd"`` (amounts in
    micro-USD) or ``"tokens"``.
    """

    def __init__(self, scope: str, unit: str, limit: int, committed: int, needed: int) -> None:
        self.scope = scope
        self.unit = unit
        self.limit = limit
        self.committed = committed  # spent + reserved by others
        self.needed = needed
        super().__init__(
            f"{scope} {unit} budget: limit {limit}, committed {committed}, needs {needed}"
        )

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.committed)


class GuardrailRefused(AccountingError):
    """A workflow guardrail refuses the request; nothing was held or sent.

    ``reason`` is ``cancelled`` (the workflow was cancelled or stopped), ``expired``
    (past its X-Workflow-Timeout-S), ``call_limit`` (X-Workflow-Max-Calls reached) or
    ``loop`` (the same request more often than the loop guard allows). ``limit`` and
    ``value`` say which limit, its value and where the workflow stands.
    """

    def __init__(
        self,
        reason: str,
        limit: float | int | None = None,
        value: float | int | None = None,
        detail: str = "",
    ) -> None:
        self.reason = reason
        self.limit = limit
        self.value = value
        self.detail = detail
        super().__init__(f"workflow guardrail {reason}: limit {limit}, at {value} {detail}".strip())


class StoreUnavailable(AccountingError):
    """The store could not be reached or failed; budgets fail closed."""


class StoreReset(StoreUnavailable):
    """The store lost its data (a Redis restarted without persistence, a failover to
    an empty replica): budgets and idempotency fail closed until an operator accepts
    the reset (``POST /admin/store/accept-reset``) or the data comes back."""


class WorkflowNotFound(AccountingError):
    """No workflow with that id under the caller's key."""
