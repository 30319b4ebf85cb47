"""How long an upstream asks us to wait, and the backoff used when it does not say.

Sources, in order of precedence (the first usable one wins):

1. ``retry-after-ms``: milliseconds, possibly fractional.
2. ``retry-after``: seconds (integer or fractional) or an HTTP-date (RFC 9110).
3. OpenAI ``x-ratelimit-reset-requests`` / ``x-ratelimit-reset-tokens``: Go-style
   durations ("1s", "20ms", "6m0s", "1h2m3.5s").
4. Anthropic ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-reset``:
   RFC 3339 timestamps.

Within a reset family, the limits whose matching ``remaining`` header is "0" are the
exhausted ones and we wait for the latest of them; when none says 0 we take the
earliest reset present. Garbage, negative, non-finite, or values above ``max_seconds``
are ignored (as if absent) and the next source is tried. A time in the past means 0.0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["backoff_delay", "go_duration", "parse_retry_after", "rfc3339_until"]

_NUMBER_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
_DURATION_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|h|m|s)", re.ASCII)
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # micro sign
    "μs": 1e-6,  # greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}

# (reset header, matching remaining header)
_OPENAI_RESETS = (
    ("x-ratelimit-reset-requests", "x-ratelimit-remaining-requests"),
    ("x-ratelimit-reset-tokens", "x-ratelimit-remaining-tokens"),
)
_ANTHROPIC_RESETS = tuple(
    (f"anthropic-ratelimit-{kind}-reset", f"anthropic-ratelimit-{kind}-remaining")
    for kind in ("requests", "tokens", "input-tokens", "output-tokens")
)


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased names to values; works for dicts and httpx.Headers-like mappings."""
    return {str(name).lower(): str(value) for name, value in headers.items()}


def _number(text: str) -> float | None:
    """A plain non-negative decimal number; None for anything else."""
    text = text.strip()
    if not _NUMBER_RE.fullmatch(text):
        return None
    return float(text)


def go_duration(text: str) -> float | None:
    """Seconds of a Go duration string ("1h2m3.5s", "20ms", "0"); None if invalid."""
    text = text.strip()
    if text == "0":
        return 0.0
    if not text:
        return None
    total = 0.0
    position = 0
    for match in _DURATION_PART_RE.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return total if position == len(text) else None


def _duration_reset(text: str, now: float) -> float | None:
    del now  # durations are relative already
    return go_duration(text)


def _http_date(text: str, now: float) -> float | None:
    """Seconds until an HTTP-date (IMF-fixdate, RFC 850, asctime); None if invalid."""
    try:
        when = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # HTTP-dates are always GMT
    return when.timestamp() - now


def rfc3339_until(text: str, now: float) -> float | None:
    """Seconds until an RFC 3339 timestamp (offset required); None if invalid."""
    text = text.strip()
    if len(text) < 20 or text[10] not in "Tt ":
        return None
    try:
        when = datetime.fromisoformat(text.upper())
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp() - now


def _usable(seconds: float | None, max_seconds: float) -> float | None:
    """A time in the past becomes 0.0; None when unknown, non-finite or above the cap."""
    if seconds is None or not math.isfinite(seconds):
        return None
    seconds = max(0.0, seconds)
    return seconds if seconds <= max_seconds else None


def _retry_after(value: str, now: float) -> float | None:
    seconds = _number(value)
    return seconds if seconds is not None else _http_date(value, now)


def _reset_family(
    headers: dict[str, str],
    pairs: tuple[tuple[str, str], ...],
    parse: Callable[[str, float], float | None],
    now: float,
    max_seconds: float,
) -> float | None:
    exhausted: list[float] = []
    others: list[float] = []
    for reset_name, remaining_name in pairs:
        raw = headers.get(reset_name)
        if raw is None:
            continue
        seconds = _usable(parse(raw, now), max_seconds)
        if seconds is None:
            continue
        remaining = _number(headers.get(remaining_name, ""))
        (exhausted if remaining == 0 else others).append(seconds)
    if exhausted:
        return max(exhausted)
    return min(others) if others else None


def parse_retry_after(
    headers: Mapping[str, str], now: float, max_seconds: float = 3600.0
) -> float | None:
    """Seconds the server asks us to wait before retrying, or None when it does not say.

    ``now`` is the current unix time, used for absolute dates. Header names are matched
    case-insensitively. See the module docstring for precedence and validation rules.
    """
    lowered = _lower_headers(headers)
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        ms = _number(raw_ms)
        seconds = _usable(ms / 1000.0 if ms is not None else None, max_seconds)
        if seconds is not None:
            return seconds
    raw = lowered.get("retry-after")
    if raw is not None:
        seconds = _usable(_retry_after(raw, now), max_seconds)
        if seconds is not None:
            return seconds
    seconds = _reset_family(lowered, _OPENAI_RESETS, _duration_reset, now, max_seconds)
    if seconds is not None:
        return seconds
    return _reset_family(lowered, _ANTHROPIC_RESETS, rfc3339_until, now, max_seconds)


def backoff_delay(attempt: int, initial_s: float, max_s: float, rand: float) -> float:
    """Delay before retry number ``attempt`` (1-based) when the server gave no hint.

    Exponential with "equal jitter": the ceiling is ``min(max_s, initial_s *
    2**(attempt-1))``; half of it is fixed and the other half scaled by ``rand``. The
    result lies in ``[ceiling/2, ceiling]`` (float rounding may reach the ceiling), so
    it is never 0 and never above ``max_s``. ``attempt`` below 1 counts as 1; ``rand`` is clamped to
    ``[0, 1]``. Raises ``ValueError`` unless ``initial_s`` and ``max_s`` are finite and
    positive.
    """
    for name, value in (("initial_s", initial_s), ("max_s", max_s)):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be finite and positive, got {value}")
    if not math.isfinite(rand):
        rand = 0.0
    rand = min(1.0, max(0.0, rand))
    exponent = min(max(attempt, 1) - 1, 1023)
    ceiling = min(max_s, initial_s * 2.0**exponent)  # overflow gives inf, then max_s
    half = ceiling / 2.0
    return min(max_s, half + half * rand)
