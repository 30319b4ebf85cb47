"""Per-key rate limits: requests per minute, tokens per minute, requests in flight.

Each of ``rpm`` and ``tpm`` is a token bucket that holds a minute's allowance and
refills continuously (``rpm`` of 60 admits a burst of 60, then one a second). A request
takes one from ``rpm`` and its token estimate (its prompt bound plus its output limit)
from ``tpm`` when it is admitted; when it ends, what it did not use goes back (what it
used beyond the estimate is taken, so the bucket may go below zero and the next
requests wait for it). ``max_inflight`` counts leases, each with an expiry so that a
replica that dies holding one does not hold it forever.

The store runs ``admit`` as one atomic step (SQLite: one write; Redis: one script):
all three limits are checked before any is taken, so a refused request takes nothing.
The arithmetic is here, once; the Redis script mirrors it in Lua.

Why not a limiter library: ``limits`` (the well-kept one) has fixed and sliding
windows over Redis, but no way to give back what a request did not use (``tpm`` is
reserved at the worst case and corrected after), no leases for requests in flight,
and it would cost a round trip per limit where this costs one for all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

LimitName = Literal["rpm", "tpm", "inflight"]
WINDOW_S = 60.0
INFLIGHT_RETRY_S = 1.0  # a request refused for max_inflight may try again this soon


@dataclass(frozen=True, slots=True)
class KeyLimits:
    rpm: int | None = None
    tpm: int | None = None
    max_inflight: int | None = None

    @property
    def active(self) -> bool:
        return self.rpm is not None or self.tpm is not None or self.max_inflight is not None


NO_LIMITS = KeyLimits()


@dataclass(frozen=True, slots=True)
class Admission:
    """``limit`` None: admitted; else the limit that refused and when to try again."""

    limit: LimitName | None = None
    retry_after_s: float = 0.0

    @property
    def admitted(self) -> bool:
        return self.limit is None


ADMITTED = Admission()


class Limiter(Protocol):
    async def admit(
        self, key: str, limits: KeyLimits, tokens: int, lease: str, lease_until: float, now: float
    ) -> Admission:
        """Take one request and ``tokens`` and a lease (until ``lease_until``) of
        ``key``'s limits, all or nothing."""
        ...

    async def release(
        self, key: str, limits: KeyLimits, lease: str, unused_tokens: int, now: float
    ) -> None:
        """The request ended: drop its lease and give back ``unused_tokens`` (negative:
        it used more than it took)."""
        ...


@dataclass(frozen=True, slots=True)
class Bucket:
    level: float
    at: float

    @classmethod
    def full(cls, capacity: int, now: float) -> Bucket:
        return cls(float(capacity), now)

    def refilled(self, capacity: int, now: float) -> float:
        elapsed = max(0.0, now - self.at)
        return min(float(capacity), self.level + elapsed * capacity / WINDOW_S)

    def wait_for(self, capacity: int, cost: int, now: float) -> float:
        """Seconds until ``cost`` fits (0: it fits now)."""
        missing = min(cost, capacity) - self.refilled(capacity, now)
        return 0.0 if missing <= 0 else missing * WINDOW_S / capacity

    def take(self, capacity: int, cost: int, now: float) -> Bucket:
        return Bucket(self.refilled(capacity, now) - min(cost, capacity), now)

    def give(self, capacity: int, amount: int, now: float) -> Bucket:
        """Give back ``amount`` (negative: take more); never above full nor below one
        window's debt."""
        level = self.refilled(capacity, now) + amount
        return Bucket(max(-float(capacity), min(float(capacity), level)), now)


def check(
    limits: KeyLimits,
    rpm: Bucket | None,
    tpm: Bucket | None,
    inflight: int,
    tokens: int,
    now: float,
) -> Admission:
    """Whether a request of ``tokens`` fits every limit (the longest wait wins)."""
    if limits.max_inflight is not None and inflight >= limits.max_inflight:
        return Admission("inflight", INFLIGHT_RETRY_S)
    waits: list[tuple[float, LimitName]] = []
    if limits.rpm is not None:
        waits.append(((rpm or Bucket.full(limits.rpm, now)).wait_for(limits.rpm, 1, now), "rpm"))
    if limits.tpm is not None:
        bucket = tpm or Bucket.full(limits.tpm, now)
        waits.append((bucket.wait_for(limits.tpm, tokens, now), "tpm"))
    wait, name = max(waits, default=(0.0, "rpm"))
    return ADMITTED if wait <= 0 else Admission(name, wait)


def lease_s(deadline_s: float) -> float:
    """A lease outlives its request's deadline a little (settling, the last bytes)."""
    return deadline_s + 30.0
