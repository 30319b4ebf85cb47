"""The request's deadline: derived once from its headers, passed down everywhere."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Deadline:
    at: float  # on ``clock``'s scale
    clock: Callable[[], float]

    def remaining(self) -> float:
        return self.at - self.clock()


def timeout_seconds(
    request_timeout: str | None, stainless_timeout: str | None, default_s: float, max_s: float
) -> float:
    """Seconds the request may take: X-Request-Timeout, else X-Stainless-Timeout, else the
    default; capped at ``max_s``. A bad X-Request-Timeout raises ValueError (the caller
    asked for something explicit); a bad X-Stainless-Timeout is ignored."""
    if request_timeout is not None:
        return min(_positive(request_timeout, "X-Request-Timeout"), max_s)
    if stainless_timeout is not None:
        try:
            return min(_positive(stainless_timeout, "X-Stainless-Timeout"), max_s)
        except ValueError:
            return min(default_s, max_s)
    return min(default_s, max_s)


def _positive(text: str, header: str) -> float:
    shown = text if len(text) <= 32 else text[:32] + "..."
    try:
        value = float(text) if len(text) <= 32 else math.inf
    except ValueError:
        raise ValueError(f"{header} must be a number of seconds, got {shown!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{header} must be a positive number of seconds, got {shown!r}")
    return value
