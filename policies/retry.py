"""Retries of one model: transient errors only, Retry-After honoured, within the deadline.

Built on tenacity's ``AsyncRetrying`` (``reraise=True``). Before every retry
``plan_retry`` decides, from the error alone, whether and how long to wait:

- the server's Retry-After (any form) is waited in full, never less; when it is longer
  than ``max_retry_after_s`` or than the time left, we do not sleep at all: the error
  goes up at once (to the next fallback, or to the caller as 429 with Retry-After);
- otherwise jittered exponential backoff between ``initial_backoff_s`` and
  ``max_backoff_s``;
- no attempt starts that the deadline cannot hold;
- silence (``retry_here`` False: no first byte, no first event in time) is not retried
  on the same model: the next candidate is tried at once;
- a retry needs a token from the upstream's ``RetryBudget`` (retries in flight at most
  ``ratio`` of requests in flight, at least ``minimum``), so an outage cannot multiply
  load;
- when the caller's SDK is itself retrying (``x-stainless-retry-count`` > 0) the
  gateway makes one attempt per model and lets the SDK's retry be the retry.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from policies.deadline import Deadline
from policies.errors import UpstreamError
from policies.retry_after import backoff_delay

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetrySettings:
    max_attempts: int = 3
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 20.0
    max_retry_after_s: float = 60.0


class RetryBudget:
    """Retries in flight <= max(minimum, ratio * requests in flight), per upstream."""

    def __init__(self, ratio: float = 0.2, minimum: int = 3) -> None:
        self.ratio = ratio
        self.minimum = minimum
        self.requests = 0
        self.retries = 0
        self.exhausted = 0

    def try_acquire(self) -> bool:
        if self.retries + 1 > max(self.minimum, int(self.ratio * self.requests)):
            self.exhausted += 1
            return False
        self.retries += 1
        return True

    def release(self) -> None:
        self.retries -= 1


def plan_retry(
    exc: BaseException, attempt: int, settings: RetrySettings, time_left: float, rand: float
) -> float | None:
    """Seconds to wait before the next attempt, or None to stop now."""
    if not isinstance(exc, UpstreamError) or not exc.retryable or not exc.retry_here:
        return None
    if attempt >= settings.max_attempts:
        return None
    if exc.retry_after_s is not None:
        wait = exc.retry_after_s
        if wait > settings.max_retry_after_s:
            return None
    else:
        wait = backoff_delay(attempt, settings.initial_backoff_s, settings.max_backoff_s, rand)
    return wait if wait < time_left else None


@dataclass
class RetryHooks:
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rand: Callable[[], float] = random.random
    on_retry: Callable[[UpstreamError, float], None] = lambda _e, _w: None
    on_budget_exhausted: Callable[[], None] = lambda: None


def _next_wait(
    exc: UpstreamError,
    attempt: int,
    settings: RetrySettings,
    budget: RetryBudget,
    deadline: Deadline,
    hooks: RetryHooks,
) -> float | None:
    """How long to wait before attempt ``attempt + 1``, with its retry token taken; or
    None to stop here."""
    wait = plan_retry(exc, attempt, settings, deadline.remaining(), hooks.rand())
    if wait is None:
        return None
    if not budget.try_acquire():
        hooks.on_budget_exhausted()
        return None
    hooks.on_retry(exc, wait)
    return wait


async def call_with_retries(
    fn: Callable[[int], Awaitable[T]],
    settings: RetrySettings,
    budget: RetryBudget,
    deadline: Deadline,
    hooks: RetryHooks,
) -> T:
    """Run ``fn(attempt_number)`` until it succeeds or ``plan_retry`` says stop.

    The first attempt runs directly (the common case costs no retry machinery); once it
    failed with something worth retrying, tenacity drives the rest. Every retry token
    taken from ``budget`` is given back however the call ends, a cancellation during a
    backoff included.
    """
    budget.requests += 1
    held = _Tokens(budget)
    try:
        try:
            return await fn(1)
        except UpstreamError as exc:
            wait = held.next_wait(exc, 1, settings, deadline, hooks)
            if wait is None:
                raise
        await hooks.sleep(wait)
        return await _retries(fn, settings, held, deadline, hooks)
    finally:
        held.release_all()
        budget.requests -= 1


class _Tokens:
    """The retry tokens one call holds (at most one at a time)."""

    __slots__ = ("budget", "count")

    def __init__(self, budget: RetryBudget) -> None:
        self.budget = budget
        self.count = 0

    def next_wait(
        self,
        exc: UpstreamError,
        attempt: int,
        settings: RetrySettings,
        deadline: Deadline,
        hooks: RetryHooks,
    ) -> float | None:
        wait = _next_wait(exc, attempt, settings, self.budget, deadline, hooks)
        if wait is not None:
            self.count += 1
        return wait

    def release_one(self) -> None:
        if self.count:
            self.count -= 1
            self.budget.release()

    def release_all(self) -> None:
        while self.count:
            self.release_one()


async def _retries(
    fn: Callable[[int], Awaitable[T]],
    settings: RetrySettings,
    held: _Tokens,
    deadline: Deadline,
    hooks: RetryHooks,
) -> T:
    """Attempts 2.. under tenacity; attempt 2's retry token is already held."""
    planned: dict[int, float | None] = {}

    def plan(state: RetryCallState) -> float | None:
        # tenacity may ask wait before stop: plan each attempt's follow-up once.
        number = state.attempt_number + 1
        if number not in planned:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, UpstreamError):
                planned[number] = held.next_wait(exc, number, settings, deadline, hooks)
            else:
                planned[number] = None
        return planned[number]

    retrying = AsyncRetrying(
        stop=lambda state: plan(state) is None,
        wait=lambda state: plan(state) or 0.0,
        sleep=hooks.sleep,
        reraise=True,
        retry=retry_if_exception(lambda e: isinstance(e, UpstreamError) and e.retryable),
    )
    async for attempt in retrying:
        with attempt:
            try:
                return await fn(attempt.retry_state.attempt_number + 1)
            finally:
                held.release_one()
    raise AssertionError("unreachable: tenacity reraises the last error")
