from __future__ import annotations

import pytest

from policies.deadline import Deadline, timeout_seconds
from policies.errors import UpstreamError
from policies.retry import RetryBudget, RetryHooks, RetrySettings, call_with_retries, plan_retry
from tests.support.clock import FakeClock

SETTINGS = RetrySettings(max_attempts=4, initial_backoff_s=1, max_backoff_s=8, max_retry_after_s=60)


def err(
    kind: str = "server_error", retry_after: float | None = None, retryable: bool = True
) -> UpstreamError:
    return UpstreamError(kind, kind=kind, retryable=retryable, retry_after_s=retry_after)


def test_retry_after_is_waited_in_full() -> None:
    assert plan_retry(err("rate_limited", 1.2), 1, SETTINGS, 30, 0.0) == 1.2


def test_retry_after_beyond_deadline_or_cap_means_no_sleep() -> None:
    assert plan_retry(err("rate_limited", 20), 1, SETTINGS, 10, 0.5) is None
    assert plan_retry(err("rate_limited", 61), 1, SETTINGS, 600, 0.5) is None


def test_backoff_is_bounded_and_within_deadline() -> None:
    for attempt in (1, 2, 3):
        wait = plan_retry(err(), attempt, SETTINGS, 100, 0.99)
        assert wait is not None and 0 < wait <= min(8, 2 ** (attempt - 1))
    assert plan_retry(err(), 1, SETTINGS, 0.1, 0.99) is None
    assert plan_retry(err(), 4, SETTINGS, 100, 0.5) is None


def test_non_retryable_is_never_retried() -> None:
    assert plan_retry(err("client_error", retryable=False), 1, SETTINGS, 100, 0.5) is None
    assert plan_retry(ValueError("x"), 1, SETTINGS, 100, 0.5) is None


def test_budget_allows_ratio_of_inflight_with_a_floor() -> None:
    budget = RetryBudget(0.2, 3)
    budget.requests = 100
    granted = sum(budget.try_acquire() for _ in range(30))
    assert granted == 20 and budget.exhausted == 10
    small = RetryBudget(0.2, 3)
    small.requests = 1
    assert [small.try_acquire() for _ in range(4)] == [True, True, True, False]


async def test_call_with_retries_sleeps_what_was_planned() -> None:
    clock = FakeClock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    calls: list[int] = []

    async def fn(number: int) -> str:
        calls.append(number)
        if number < 3:
            raise err("rate_limited", 2.5)
        return "ok"

    budget = RetryBudget()
    result = await call_with_retries(
        fn,
        SETTINGS,
        budget,
        Deadline(clock() + 30, clock),
        RetryHooks(sleep=sleep, rand=lambda: 0.5),
    )
    assert result == "ok" and calls == [1, 2, 3] and slept == [2.5, 2.5]
    assert budget.requests == 0 and budget.retries == 0


async def test_call_with_retries_reraises_the_last_error() -> None:
    clock = FakeClock()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    async def fn(number: int) -> str:
        raise err()

    with pytest.raises(UpstreamError):
        await call_with_retries(
            fn,
            SETTINGS,
            RetryBudget(),
            Deadline(clock() + 30, clock),
            RetryHooks(sleep=sleep, rand=lambda: 0.5),
        )


def test_timeout_headers() -> None:
    assert timeout_seconds("5", "100", 600, 3600) == 5
    assert timeout_seconds(None, "100", 600, 3600) == 100
    assert timeout_seconds(None, "garbage", 600, 3600) == 600
    assert timeout_seconds("99999", None, 600, 3600) == 3600
    for bad in ("x", "-1", "0", "nan", "inf"):
        with pytest.raises(ValueError, match="X-Request-Timeout"):
            timeout_seconds(bad, None, 600, 3600)


@pytest.mark.parametrize("cancel_on_sleep", [1, 2])
async def test_a_cancel_during_a_backoff_gives_the_retry_token_back(cancel_on_sleep: int) -> None:
    """Three such leaks used to leave a provider without retries until a restart."""
    import asyncio

    budget = RetryBudget(0.2, 3)
    sleeps = 0

    async def sleep(_: float) -> None:
        nonlocal sleeps
        sleeps += 1
        if sleeps == cancel_on_sleep:
            raise asyncio.CancelledError

    async def always_fails(_: int) -> None:
        raise err()

    clock = FakeClock()
    for _ in range(5):  # more than the budget's floor of three
        sleeps = 0
        with pytest.raises(asyncio.CancelledError):
            await call_with_retries(
                always_fails, SETTINGS, budget, Deadline(clock() + 100, clock), RetryHooks(sleep)
            )
        assert budget.retries == 0 and budget.requests == 0
    assert budget.exhausted == 0
