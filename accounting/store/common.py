"""Small pieces both store implementations share: ids, periods, token sums, checks,
and the bounds every number a store keeps must stay within (``MAX_STORE_INT``)."""

from __future__ import annotations

import itertools
import json
import math
import secrets
from collections.abc import Mapping

import orjson

from accounting.errors import BudgetExceeded
from accounting.store.base import Charge, KeyBudget, Reservation, ReserveRequest

# Token kinds that add up to a workflow's ``tokens_spent``; ``cached_input`` is a
# subset of ``input`` and is only reported by kind.
COUNTED_KINDS = ("input", "output", "partial_output")

DEFAULT_WORKFLOW_TTL_S = 30 * 86400

# The largest integer (micro-USD, tokens, caps, limits) a store accepts. Lua numbers
# are doubles, so a Redis script compares exactly only up to 2**53; SQLite integers
# and HINCRBY are 64-bit. 2**53 - 1 micro-USD is about 9 billion USD: far beyond any
# real amount, so a request above it is a bug or an attack, refused with ValueError
# before anything is written (the gateway bounds client input earlier, with a 400).
MAX_STORE_INT = 2**53 - 1
# The longest lease or idempotency record TTL a store accepts: ten years.
MAX_DURATION_S = 10 * 366 * 86400
# 64-bit counters: what a stored value is clamped to where it must be written back.
INT64_MAX = 2**63 - 1

# A settle whose hold the store lost (an orphan) may have to re-create the key window
# it was held against, but the window's length is not in the reservation. It is kept
# as if it were a year long: a window outliving its period costs one small record,
# one dropped before its period ends would forget spend the key budget must count.
ORPHAN_WINDOW_S = 366 * 86400

# Workflow guardrails and self-description (see ``Store.reserve``, ``Store.heartbeat``):
FINGERPRINTS_KEPT = 256  # the loop guard's counts kept per workflow (least recent go)
KIND_COSTS_KEPT = 101  # completed workflows' costs kept per kind (for its median)
MAX_NAME_CHARS = 64  # a workflow's name (its kind), a stop reason
MAX_STEP_CHARS = 256  # a heartbeat's step, as the gateway bounds X-Workflow-Step
MAX_FINGERPRINT_CHARS = 256  # the loop guard's fingerprint (the gateway's is 32 hex)
MAX_ERROR_CHARS = 2_000  # the error text /complete records (longer text is cut)
OUTCOMES = ("succeeded", "failed")
LIST_STATUSES = ("running", "stalled", "completed", "cancelled")


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
    counts = {k: int(v) for k, v in tokens.items()}
    try:
        return orjson.dumps(counts, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:  # a count beyond 64 bits: the slow encoder takes any int
        return json.dumps(counts, sort_keys=True)


def validate_request(req: ReserveRequest) -> None:
    """Refuse (ValueError, naming the field and its range) a request a store cannot
    keep exactly; checked before anything is written."""
    if req.workflow_id == "":
        raise ValueError("workflow_id must be None or a non-empty string")
    check_int("amount_micros", req.amount_micros)
    check_int("tokens", req.tokens)
    validate_caps(req.cap_micros, req.cap_tokens)
    check_duration("lease_s", req.lease_s)
    check_time("now", req.now)
    if req.key_budget is not None:
        validate_key_budget(req.key_budget)
    validate_guardrails(req)


def validate_guardrails(req: ReserveRequest) -> None:
    """The guardrail fields of ``req``: a timeout of (0, ten years], a call cap in
    ``[1, MAX_STORE_INT]``, a loop threshold in ``[0, MAX_STORE_INT]``, bounded texts."""
    if req.timeout_s is not None:
        check_timeout("timeout_s", req.timeout_s)
    if req.max_calls is not None:
        check_int("max_calls", req.max_calls, low=1)
    check_int("max_identical", req.max_identical)
    if req.name is not None:
        check_text("name", req.name, MAX_NAME_CHARS)
    if req.fingerprint is not None:
        check_text("fingerprint", req.fingerprint, MAX_FINGERPRINT_CHARS)


def validate_key_budget(kb: KeyBudget) -> None:
    check_int("key_budget.limit_micros", kb.limit_micros)
    check_period("key_budget.period_s", kb.period_s)


def validate_caps(cap_micros: int | None, cap_tokens: int | None) -> None:
    if cap_micros is not None:
        check_int("cap_micros", cap_micros)
    if cap_tokens is not None:
        check_int("cap_tokens", cap_tokens)


def validate_charge(charge: Charge) -> None:
    """Every count of ``charge`` in range, and their counted sum (``tokens_spent``)."""
    check_int("cost_micros", charge.cost_micros)
    for kind, count in charge.tokens.items():
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"token kinds must be non-empty strings, got {kind!r}")
        check_int(f"tokens[{kind!r}]", count)
    check_int("counted tokens (input + output + partial_output)", counted_tokens(charge.tokens))


def validate_settle(res: Reservation, charge: Charge, now: float) -> None:
    """A settle the store can apply whole: the reservation's numbers (an orphan settle
    re-creates its hold and caps from them) and the charge's."""
    check_int("reservation amount_micros", res.amount_micros)
    check_int("reservation tokens", res.tokens)
    validate_caps(res.cap_micros, res.cap_tokens)
    if res.period_start is not None:
        check_int("reservation period_start", res.period_start)
    check_time("reservation expires_at", res.expires_at)
    check_time("now", now)
    validate_charge(charge)


def check_int(name: str, value: object, low: int = 0) -> None:
    """``value`` is an int (not a bool) in ``[low, MAX_STORE_INT]``, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {type(value).__name__}")
    if not low <= value <= MAX_STORE_INT:
        raise ValueError(f"{name} must be in [{low}, {MAX_STORE_INT}] (2**53 - 1), got {value}")


def check_duration(name: str, value: object) -> None:
    """A number of seconds: finite, in ``[0, MAX_DURATION_S]`` (ten years)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not (math.isfinite(value) and 0 <= value <= MAX_DURATION_S):
        raise ValueError(f"{name} must be finite and in [0, {MAX_DURATION_S}] s, got {value}")


def check_timeout(name: str, value: object) -> None:
    """A timeout: a number of seconds, finite, above 0 and at most ``MAX_DURATION_S``."""
    check_duration(name, value)
    if value == 0:
        raise ValueError(f"{name} must be above 0 s, got {value}")


def check_text(name: str, value: object, most: int, low: int = 1) -> None:
    """A string of ``low`` to ``most`` characters, else ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    if not low <= len(value) <= most:
        raise ValueError(f"{name} must be {low} to {most} characters, got {len(value)}")


def check_progress(value: object) -> None:
    """A heartbeat's progress: a finite number in ``[0, 100]``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"progress must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and 0 <= value <= 100):
        raise ValueError(f"progress must be finite and in [0, 100], got {value}")


def check_outcome(value: object) -> None:
    if value not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {value!r}")


def check_list_status(value: object) -> None:
    if value not in LIST_STATUSES:
        raise ValueError(f"status must be one of {', '.join(LIST_STATUSES)}, got {value!r}")


def check_heartbeat(now: float, step: str | None, progress: float | None) -> None:
    check_time("now", now)
    if step is not None:
        check_text("step", step, MAX_STEP_CHARS, low=0)
    if progress is not None:
        check_progress(progress)


def check_listing(status: str, idle_before: float, limit: int) -> None:
    """A page of ``list_workflows``: a known status, a time, a limit of at least 1."""
    check_list_status(status)
    check_time("idle_before", idle_before)
    check_int("limit", limit, low=1)


def check_kind_cost(name: str, cost_micros: int, now: float) -> None:
    check_text("name", name, MAX_NAME_CHARS)
    check_int("cost_micros", cost_micros)
    check_time("now", now)


def clip_error(error: str | None) -> str | None:
    """The error text /complete records: at most ``MAX_ERROR_CHARS`` (the rest is cut)."""
    if error is not None and not isinstance(error, str):
        raise ValueError(f"error must be a string, got {type(error).__name__}")
    return None if error is None else error[:MAX_ERROR_CHARS]


def check_ttl(name: str, value: object) -> None:
    """A store setting of whole seconds (a TTL, a margin): in ``[1, MAX_DURATION_S]``."""
    check_int(name, value, low=1)
    check_duration(name, value)


def check_period(name: str, value: object) -> None:
    """A key budget period: an integer of seconds in ``[1, MAX_STORE_INT]`` (a period
    of centuries is a budget for the key's life, not an error)."""
    check_int(name, value, low=1)


def check_time(name: str, value: object) -> None:
    """A unix time: finite, its magnitude at most ``MAX_STORE_INT``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a unix time, got {type(value).__name__}")
    if not (math.isfinite(value) and abs(value) <= MAX_STORE_INT):
        raise ValueError(
            f"{name} must be finite and in [-{MAX_STORE_INT}, {MAX_STORE_INT}], got {value}"
        )


def check_limit(limit: object) -> None:
    """How many rows a listing may return: an integer in ``[0, MAX_STORE_INT]``."""
    check_int("limit", limit)


def stored_int(raw: object) -> int:
    """An integer read back from a store, whatever is there: an int of any size as is,
    a float or decimal text (an older version, a hand edit) truncated to an int, an
    infinity (or a number of more digits than ``int`` parses) as +-(2**63 - 1), and
    anything else (``abc``, ``nan``, NULL) as 0. Reads never fail on a value, so one
    bad field cannot make a workflow unreadable."""
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str | bytes | bytearray):
        try:
            return int(raw)
        except ValueError:  # not an integer (or too many digits): try it as a float
            pass
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0
    if math.isinf(value):
        return INT64_MAX if value > 0 else -INT64_MAX
    return 0 if math.isnan(value) else int(value)


def stored_float(raw: object) -> float:
    """A time read back from a store; anything that is no finite number is 0.0."""
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) else 0.0


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
