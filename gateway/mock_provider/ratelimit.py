"""The mock provider's own rate limit, as real providers announce theirs.

``POST /_mock/ratelimit {"requests": N, "window_s": T}`` (``{"requests": 0}`` turns it
off): at most N requests per fixed window of T seconds, the first window starting at
the first request. Every answer then carries the provider's headers (OpenAI:
``x-ratelimit-limit-requests``, ``-remaining-requests``, ``-reset-requests`` as a
duration; Anthropic: ``anthropic-ratelimit-requests-limit``, ``-remaining``,
``-reset`` as an RFC 3339 time), and a request over the limit gets a 429 with
``retry-after``; the stats count those in ``rate_limited``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(slots=True)
class Window:
    requests: int
    window_s: float
    started: float | None = None
    used: int = 0

    def take(self, now: float) -> tuple[bool, int, float]:
        """(admitted, remaining after this request, seconds until the reset)."""
        if self.started is None or now >= self.started + self.window_s:
            if self.started is None:
                self.started = now
            else:
                passed = math.floor((now - self.started) / self.window_s)
                self.started += passed * self.window_s
            self.used = 0
        reset_s = self.started + self.window_s - now
        if self.used >= self.requests:
            return False, 0, reset_s
        self.used += 1
        return True, self.requests - self.used, reset_s


def headers(
    window: Window, remaining: int, reset_s: float, anthropic: bool
) -> list[tuple[str, str]]:
    if anthropic:
        reset = datetime.fromtimestamp(time.time() + reset_s, UTC).isoformat()
        return [
            ("anthropic-ratelimit-requests-limit", str(window.requests)),
            ("anthropic-ratelimit-requests-remaining", str(remaining)),
            ("anthropic-ratelimit-requests-reset", reset.replace("+00:00", "Z")),
        ]
    return [
        ("x-ratelimit-limit-requests", str(window.requests)),
        ("x-ratelimit-remaining-requests", str(remaining)),
        ("x-ratelimit-reset-requests", f"{reset_s:.3f}s"),
    ]


class RateLimit:
    """The mock's limit (none until configured). Used from one event loop only."""

    def __init__(self) -> None:
        self.window: Window | None = None

    def configure(self, requests: int, window_s: float) -> None:
        self.window = Window(requests, window_s) if requests > 0 else None

    def take(self, path: str) -> tuple[bool, list[tuple[str, str]], float]:
        """(admitted, headers for the answer, seconds until the reset)."""
        if self.window is None:
            return True, [], 0.0
        admitted, remaining, reset_s = self.window.take(time.monotonic())
        return admitted, headers(self.window, remaining, reset_s, path == "/v1/messages"), reset_s


NO_LIMIT = RateLimit()  # never configured: admits everything
