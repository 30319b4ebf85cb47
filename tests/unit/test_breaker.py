from __future__ import annotations

import pytest

from policies.breaker import Breaker, BreakerOpen
from policies.errors import UpstreamError
from tests.support.clock import FakeClock


def server_error() -> UpstreamError:
    return UpstreamError("boom", kind="server_error", retryable=True, breaker_failure=True)


def client_error() -> UpstreamError:
    return UpstreamError("bad", kind="client_error", status=400, body=b"{}")


def fail(breaker: Breaker, exc: BaseException) -> None:
    with pytest.raises(type(exc)), breaker.calling():
        raise exc


def test_opens_after_fail_max_and_half_opens_after_timeout() -> None:
    clock = FakeClock()
    changes: list[tuple[str, str]] = []
    b = Breaker("m", 3, 30, clock, lambda _m, old, new: changes.append((old, new)))
    for _ in range(3):
        fail(b, server_error())
    assert b.state == "open"
    with pytest.raises(BreakerOpen) as info, b.calling():
        pass
    assert info.value.retry_after_s == pytest.approx(30)
    clock.advance(29.9)
    assert b.state == "open"
    clock.advance(0.2)
    assert b.state == "half-open" and b.admits()
    with b.calling():
        pass
    assert b.state == "closed" and b.fail_counter == 0
    assert ("closed", "open") in changes and ("half-open", "closed") in changes


def test_client_errors_and_cancellation_leave_the_breaker_untouched() -> None:
    b = Breaker("m", 2, 30, FakeClock())
    fail(b, server_error())
    fail(b, client_error())
    assert b.fail_counter == 1
    import asyncio

    fail(b, asyncio.CancelledError())
    assert b.fail_counter == 1 and b.state == "closed"


def test_half_open_admits_exactly_one_trial() -> None:
    clock = FakeClock()
    b = Breaker("m", 1, 10, clock)
    fail(b, server_error())
    clock.advance(11)
    with b.calling():
        assert not b.admits()
        with pytest.raises(BreakerOpen), b.calling():
            pass
        trial_done = True
    assert trial_done and b.state == "closed"


def test_failed_trial_reopens_for_a_full_timeout() -> None:
    clock = FakeClock()
    b = Breaker("m", 1, 10, clock)
    fail(b, server_error())
    clock.advance(11)
    fail(b, server_error())
    assert b.state == "open" and b.seconds_until_half_open() == pytest.approx(10)


def test_cancelled_trial_keeps_the_breaker_half_open() -> None:
    import asyncio

    clock = FakeClock()
    b = Breaker("m", 1, 10, clock)
    fail(b, server_error())
    clock.advance(11)
    fail(b, asyncio.CancelledError())
    assert b.state == "half-open" and b.admits()


def test_reset_closes() -> None:
    b = Breaker("m", 1, 10, FakeClock())
    fail(b, server_error())
    b.reset()
    assert b.state == "closed"
