"""Small pieces both store implementations share: ids, periods, token sums, checks."""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Mapping

from accounting.errors import BudgetExceeded
from accounting.store.base import ReserveRequest

# Token kinds that add up to a workflow's ``tokens_spent``; ``cached_input`` is a
# subset of ``input`` and is only reported by kind.
COUNTED_KINDS = ("input", "output", "partial_output")

DEFAULT_WORKFLOW_TTL_S = 30 * 86400

# A settle whose hold the store lost (an orphan) may have to re-create the key window
# it was held against, but the window's length is not in the reservation. It is kept
# as if it were a year long: a window outliving its period costs one small record,
# one dropped before its period ends would forget spend the key budget must count.
ORPHAN_WINDOW_S = 366 * 86400


class IdSource:
    """Unique ids without a system call each: a random per-instance prefix + a counter."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._count = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):x}"


def new_token() -> str:
    return secrets.token_hex(16)


def period_start(now: float, period_s: int) -> int:
    """Start of the fixed window (aligned to the unix epoch) that contains ``now``."""
    if period_s <= 0:
        raise ValueError(f"period_s must be positive, got {period_s}")
    return int(now // period_s) * period_s


def counted_tokens(tokens: Mapping[str, int]) -> int:
    return sum(int(tokens.get(kind, 0)) for kind in COUNTED_KINDS)


def tokens_json(tokens: Mapping[str, int]) -> str:
    return json.dumps({k: int(v) for k, v in tokens.items()}, sort_keys=True)


def validate_request(req: ReserveRequest) -> None:
    if req.workflow_id == "":
        raise ValueError("workflow_id must be None or a non-empty string")
    if req.amount_micros < 0 or req.tokens < 0:
        raise ValueError("reserve amounts must be non-negative")
    if req.cap_micros is not None and req.cap_micros < 0:
        raise ValueError("cap_micros must be non-negative")
    if req.cap_tokens is not None and req.cap_tokens < 0:
        raise ValueError("cap_tokens must be non-negative")


def lowered(current: int | None, requested: int | None) -> int | None:
    """The cap after a request: a cap can be set or lowered, never raised (None = no cap)."""
    if requested is None:
        return current
    if current is None:
        return requested
    return min(current, requested)


def check_workflow(
    cap_micros: int | None,
    cap_tokens: int | None,
    committed_micros: int,
    committed_tokens: int,
    req: ReserveRequest,
) -> BudgetExceeded | None:
    """The workflow-level refusal for ``req``, if any (usd checked before tokens)."""
    if cap_micros is not None and committed_micros + req.amount_micros > cap_micros:
        return BudgetExceeded("workflow", "usd", cap_micros, committed_micros, req.amount_micros)
    if cap_tokens is not None and committed_tokens + req.tokens > cap_tokens:
        return BudgetExceeded("workflow", "tokens", cap_tokens, committed_tokens, req.tokens)
    return None


def check_key(limit: int, committed: int, req: ReserveRequest) -> BudgetExceeded | None:
    if committed + req.amount_micros > limit:
        return BudgetExceeded("key", "usd", limit, committed, req.amount_micros)
    return None
