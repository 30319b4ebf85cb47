"""Small conversions of ``RedisStore``: tenant names and hash tags (``tenant_tag``,
``store_key``), numbers as script arguments, and script replies back into
``WorkflowState``, ``BudgetExceeded`` and ``GuardrailRefused``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from accounting.errors import AccountingError, BudgetExceeded
from accounting.store.base import Outcome, ReserveRequest, WorkflowState, WorkflowStatus
from accounting.store.common import MAX_STORE_INT, stored_float, stored_int
from accounting.store.guardrails import refused


def tenant_of(key: str) -> str:
    """The gateway key, escaped so it holds no ``:`` and no hash-tag braces."""
    return key.replace("%", "%25").replace("{", "%7B").replace("}", "%7D").replace(":", "%3A")


# The hash tag of the store-wide keys (epoch, reset flag, readiness, tenant registry,
# costs by kind). No escaped tenant can be ``%store``: ``tenant_of`` turns every ``%``
# into ``%25``, so a lone ``%`` followed by ``s`` never appears in one.
STORE_TAG = "%store"


def check_prefix(prefix: str) -> None:
    """A key prefix must not hold hash-tag braces: the first ``{...}`` of every key
    must be the tenant's (or the store's) tag."""
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"redis key prefix {prefix!r} must not contain '{{' or '}}'")


def tenant_tag(prefix: str, key: str) -> str:
    """``<prefix>{<tenant>}``: the base of every Redis key of gateway key ``key``. Keys
    that start with it share one hash tag, hence one cluster slot, so one Lua script
    may change them all atomically (on Redis Cluster and on a single Redis alike)."""
    return f"{prefix}{{{tenant_of(key)}}}"


def store_key(prefix: str, name: str) -> str:
    """A store-wide key, ``<prefix>{%store}:<name>``; every store-wide key shares the
    one slot of ``STORE_TAG``."""
    return f"{prefix}{{{STORE_TAG}}}:{name}"


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
    fields = Fields({_text(k): v for k, v in pairs})
    return WorkflowState(
        key=key, workflow_id=workflow_id,
        cap_micros=fields.opt_int("cap_micros"), cap_tokens=fields.opt_int("cap_tokens"),
        spent_micros=fields.count("spent_micros"),
        reserved_micros=fields.count("reserved_micros"),
        tokens_spent=fields.count("tokens_spent"),
        tokens_reserved=fields.count("tokens_reserved"),
        tokens_by_kind=fields.kinds(),
        calls=fields.count("calls"), retries=fields.count("retries"),
        fallbacks=fields.count("fallbacks"), partial_streams=fields.count("partial_streams"),
        expired_holds=fields.count("expired_holds"),
        expired_micros=fields.count("expired_micros"),
        started_at=stored_float(fields.get("started_at")),
        last_seen_at=stored_float(fields.get("last_seen_at")),
        step=fields.text("step"), status=fields.status(),
        completed_at=fields.time("completed_at"), deadline_at=fields.time("deadline_at"),
        max_calls=fields.opt_int("max_calls"), requests=fields.count("requests"),
        name=fields.text("name"), cancelled_at=fields.time("cancelled_at"),
        stop_reason=fields.text("stop_reason"), outcome=fields.outcome(),
        error=fields.text("error"), progress=fields.time("progress"),
        heartbeat_at=fields.time("heartbeat_at"),
    )  # fmt: skip


class Fields(dict[str, Any]):
    """A workflow hash's fields by name, read as the ``WorkflowState`` field types."""

    def count(self, name: str) -> int:
        return stored_int(self.get(name, 0))

    def opt_int(self, name: str) -> int | None:
        raw = self.get(name)
        return None if raw is None else stored_int(raw)

    def time(self, name: str) -> float | None:
        raw = self.get(name)
        return None if raw is None else stored_float(raw)

    def text(self, name: str) -> str | None:
        raw = self.get(name)
        return None if raw is None else _text(raw)

    def kinds(self) -> dict[str, int]:
        return {k[3:]: stored_int(v) for k, v in self.items() if k.startswith("tk:")}

    def status(self) -> WorkflowStatus:
        raw = self.get("status")
        if raw == b"completed":
            return "completed"
        return "cancelled" if raw == b"cancelled" else "running"

    def outcome(self) -> Outcome | None:
        raw = self.get("outcome")
        if raw == b"succeeded":
            return "succeeded"
        return "failed" if raw == b"failed" else None


def _text(raw: object) -> str:
    if isinstance(raw, bytes):
        return raw.decode(errors="replace")
    return str(raw)


GUARDRAILS = ("cancelled", "expired", "call_limit", "loop")


def refusal(
    outcome: str, found: WorkflowState | None, req: ReserveRequest, reply: list[Any]
) -> AccountingError:
    """The reserve script's refusal as BudgetExceeded or GuardrailRefused."""
    if outcome == "key" and req.key_budget is not None:
        committed = stored_int(reply[2]) + stored_int(reply[3])
        return BudgetExceeded(
            "key", "usd", req.key_budget.limit_micros, committed, req.amount_micros
        )
    if found is None:
        raise RuntimeError(f"unexpected reserve reply {outcome!r}")
    if outcome in GUARDRAILS:
        return refused(outcome, found, req, stored_int(reply[2]) if outcome == "loop" else 0)
    if outcome == "tokens" and found.cap_tokens is not None:
        committed = found.tokens_spent + found.tokens_reserved
        return BudgetExceeded("workflow", "tokens", found.cap_tokens, committed, req.tokens)
    if outcome == "workflow" and found.cap_micros is not None:
        committed = found.spent_micros + found.reserved_micros
        return BudgetExceeded("workflow", "usd", found.cap_micros, committed, req.amount_micros)
    raise RuntimeError(f"unexpected reserve reply {outcome!r}")
