"""Pacing from a provider's rate-limit headers (``gateway.pacing``), on a hand-moved
clock."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.pacing import PROBE_S, Pacing
from tests.support.clock import FakeClock

WALL = 1_900_000_000.0


def pacing() -> tuple[Pacing, FakeClock]:
    clock = FakeClock(100.0)
    return Pacing(clock, lambda: WALL + clock.now - 100.0), clock


def test_openai_headers_hold_sends_at_the_quota_until_the_reset() -> None:
    p, clock = pacing()
    headers = {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "2",
        "x-ratelimit-reset-requests": "1.5s",
    }
    assert p.observe(200, headers, others=0)
    for _ in range(2):
        assert p.wait_s(10) == 0
        p.take(10)
    assert p.wait_s(10) == 1.5
    clock.advance(1.5)
    assert p.wait_s(10) == 0  # reset: the limit is left again
    for _ in range(3):
        p.take(10)
    assert p.wait_s(10) == PROBE_S  # used up, no reset known: probe


def test_calls_in_flight_are_taken_off_what_a_reading_says_is_left() -> None:
    p, _ = pacing()
    p.observe(200, {"x-ratelimit-remaining-requests": "2", "x-ratelimit-reset-requests": "6m0s"}, 2)
    assert p.wait_s(1) == 360.0


def test_anthropic_tokens_left_hold_a_call_that_would_not_fit() -> None:
    p, _ = pacing()
    reset = datetime.fromtimestamp(WALL + 20, UTC).isoformat().replace("+00:00", "Z")
    headers = {
        "anthropic-ratelimit-tokens-limit": "10000",
        "anthropic-ratelimit-tokens-remaining": "500",
        "anthropic-ratelimit-tokens-reset": reset,
    }
    assert p.observe(200, headers, others=0)
    assert p.wait_s(400) == 0
    assert p.wait_s(600) == 20.0


def test_a_429_retry_after_empties_the_quota_until_then() -> None:
    p, _ = pacing()
    assert p.observe(429, {"retry-after": "7"}, others=0)
    assert p.wait_s(1) == 7.0


def test_what_a_provider_never_says_is_never_paced() -> None:
    p, _ = pacing()
    assert not p.observe(200, {"x-ratelimit-remaining-requests": "lots"}, others=0)
    assert p.wait_s(10**9) == 0
