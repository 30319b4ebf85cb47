"""Pacing from a provider's own rate-limit headers.

OpenAI answers ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (the reset a
duration: ``1s``, ``6m0s``, ``250ms``); Anthropic ``anthropic-ratelimit-{requests,
tokens,input-tokens}-{limit,remaining,reset}`` (the reset an RFC 3339 time). Each
answer's reading replaces the last: what is left (less the calls this gateway has in
flight that the reading may not count yet) until the reset. A send takes one request
and its token estimate from what is left; when nothing is left, sends wait for the
reset instead of running into the provider's 429s. After the reset the provider's
``limit`` is left again (or, if it never said, one probe at a time goes out until
an answer brings a new reading). A 429's ``Retry-After`` empties what is left until
then. What a provider never reports is never paced.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from policies.retry_after import go_duration, parse_retry_after, rfc3339_until

MAX_RESET_S = 3600.0  # a reset further away than this is not believed
PROBE_S = 1.0  # with nothing left and no reset known, one send per this long


def _int(text: str | None) -> int | None:
    if text is None or not text.strip().isdigit() or len(text) > 18:
        return None
    return int(text)


@dataclass(slots=True)
class Quota:
    """One of a provider's quotas (requests or tokens) as its last answer told."""

    left: int | None = None  # None: unknown (never paced)
    limit: int | None = None
    reset_at: float | None = None  # monotonic

    def read(self, limit: int | None, remaining: int, reset_s: float | None, now: float) -> None:
        self.limit = limit if limit is not None else self.limit
        self.left = remaining
        self.reset_at = now + reset_s if reset_s is not None and reset_s <= MAX_RESET_S else None

    def wait_s(self, cost: int, now: float) -> float:
        """Seconds until ``cost`` may be sent (0: now)."""
        self._roll(now)
        if self.left is None or self.left >= min(cost, self.limit or cost):
            return 0.0
        if self.reset_at is None:
            return PROBE_S
        return self.reset_at - now

    def take(self, cost: int, now: float) -> None:
        self._roll(now)
        if self.left is not None:
            self.left -= cost

    def _roll(self, now: float) -> None:
        if self.reset_at is not None and now >= self.reset_at:
            self.reset_at = None
            self.left = self.limit  # None (unknown) when it never said: one probe
            if self.left is None:
                self.left = 1


class Pacing:
    """A provider's quotas, read from its answers' headers."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.requests = Quota()
        self.tokens = Quota()
        self._clock = clock
        self._wall = wall

    def wait_s(self, tokens: int) -> float:
        now = self._clock()
        return max(self.requests.wait_s(1, now), self.tokens.wait_s(tokens, now))

    def take(self, tokens: int) -> None:
        now = self._clock()
        self.requests.take(1, now)
        self.tokens.take(tokens, now)

    def observe(self, status: int, headers: Mapping[str, str], others: int) -> bool:
        """Read an answer's headers (``others``: this provider's other calls in flight,
        which its reading may not count yet); True when they said anything."""
        now = self._clock()
        said = False
        for quota, names in ((self.requests, "requests"), (self.tokens, "tokens")):
            said = self._read(quota, headers, names, others, now) or said
        if status == 429:
            after = parse_retry_after(headers, self._wall(), MAX_RESET_S)
            if after is not None:
                self.requests.read(None, 0, after, now)
                said = True
        return said

    def _read(
        self, quota: Quota, headers: Mapping[str, str], what: str, others: int, now: float
    ) -> bool:
        remaining = _int(headers.get(f"x-ratelimit-remaining-{what}"))
        if remaining is not None:
            reset = headers.get(f"x-ratelimit-reset-{what}")
            limit = _int(headers.get(f"x-ratelimit-limit-{what}"))
            reset_s = go_duration(reset) if reset is not None else None
            quota.read(limit, max(0, remaining - others), reset_s, now)
            return True
        for name in (what, "input-tokens") if what == "tokens" else (what,):
            remaining = _int(headers.get(f"anthropic-ratelimit-{name}-remaining"))
            if remaining is not None:
                reset = headers.get(f"anthropic-ratelimit-{name}-reset")
                limit = _int(headers.get(f"anthropic-ratelimit-{name}-limit"))
                reset_s = rfc3339_until(reset, self._wall()) if reset is not None else None
                quota.read(limit, max(0, remaining - others), reset_s, now)
                return True
        return False
