from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.retry_after import backoff_delay, parse_retry_after

NOW = 1_750_000_000.0  # fixed unix time
NOW_DT = datetime.fromtimestamp(NOW, tz=UTC)


def http_date(offset_s: float) -> str:
    return format_datetime(NOW_DT + timedelta(seconds=offset_s), usegmt=True)


def rfc3339(offset_s: float) -> str:
    return (NOW_DT + timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")


class CaseInsensitiveHeaders(Mapping[str, str]):
    """A minimal httpx.Headers-like mapping: keeps original case, iterates raw names."""

    def __init__(self, items: dict[str, str]) -> None:
        self._items = items

    def __getitem__(self, key: str) -> str:
        for name, value in self._items.items():
            if name.lower() == key.lower():
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def parse(headers: Mapping[str, str], max_seconds: float = 3600.0) -> float | None:
    return parse_retry_after(headers, NOW, max_seconds)


def test_no_headers() -> None:
    assert parse({}) is None
    assert parse({"content-type": "application/json"}) is None


@pytest.mark.parametrize(
    ("value", "expected"), [("1500", 1.5), ("250.5", 0.2505), ("0", 0.0), (" 20 ", 0.02)]
)
def test_retry_after_ms(value: str, expected: float) -> None:
    assert parse({"retry-after-ms": value}) == pytest.approx(expected)


@pytest.mark.parametrize(("value", "expected"), [("5", 5.0), ("0", 0.0), ("2.5", 2.5)])
def test_retry_after_seconds(value: str, expected: float) -> None:
    assert parse({"retry-after": value}) == expected


def test_retry_after_http_date() -> None:
    assert parse({"retry-after": http_date(30)}) == pytest.approx(30.0)


@pytest.mark.parametrize(
    "value",
    ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "Sun, 06 Nov 1994 08:49:37 GMT"],
)
def test_retry_after_all_http_date_formats(value: str) -> None:
    when = datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC).timestamp()
    assert parse_retry_after({"retry-after": value}, when - 10) == pytest.approx(10.0)
    assert parse_retry_after({"retry-after": value}, when + 10) == 0.0


def test_past_http_date_is_zero() -> None:
    assert parse({"retry-after": http_date(-600)}) == 0.0


def test_precedence_ms_over_seconds() -> None:
    headers = {"retry-after-ms": "100", "retry-after": "7", "x-ratelimit-reset-requests": "9s"}
    assert parse(headers) == pytest.approx(0.1)


def test_precedence_seconds_over_reset_headers() -> None:
    headers = {
        "retry-after": "7",
        "x-ratelimit-reset-requests": "9s",
        "anthropic-ratelimit-requests-reset": rfc3339(11),
    }
    assert parse(headers) == 7.0


def test_precedence_openai_over_anthropic() -> None:
    headers = {"x-ratelimit-reset-tokens": "3s", "anthropic-ratelimit-tokens-reset": rfc3339(11)}
    assert parse(headers) == 3.0


@pytest.mark.parametrize(
    ("bad_ms", "bad_s"),
    [("garbage", "soon"), ("-5", "-1"), ("nan", "inf"), ("1e3", "NaN"), ("99999999", "7200")],
)
def test_bad_values_fall_through(bad_ms: str, bad_s: str) -> None:
    assert parse({"retry-after-ms": bad_ms, "retry-after": "4"}) == 4.0
    assert parse({"retry-after": bad_s, "x-ratelimit-reset-requests": "2s"}) == 2.0
    assert parse({"retry-after-ms": bad_ms, "retry-after": bad_s}) is None


def test_far_future_date_ignored() -> None:
    assert parse({"retry-after": http_date(7200)}) is None
    assert parse({"retry-after": http_date(7200)}, max_seconds=10_000) == pytest.approx(7200)


def test_max_seconds_boundary() -> None:
    assert parse({"retry-after": "60"}, max_seconds=60) == 60.0
    assert parse({"retry-after": "61"}, max_seconds=60) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1s", 1.0),
        ("20ms", 0.02),
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("0.5s", 0.5),
        ("0", 0.0),
        ("1m30s", 90.0),
        ("150us", 0.00015),
        ("1µs", 0.000001),
        ("500ns", 0.0000005),
    ],
)
def test_go_durations(value: str, expected: float) -> None:
    got = parse({"x-ratelimit-reset-requests": value}, max_seconds=10_000)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize("value", ["", "1", "s", "-1s", "1x", "1s junk", "nan", "1.5", "2h"])
def test_bad_go_durations_ignored(value: str) -> None:
    # "2h" is well formed but above max_seconds.
    assert parse({"x-ratelimit-reset-requests": value}) is None


def test_openai_exhausted_limits_win() -> None:
    headers = {
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-tokens": "6m0s",
        "x-ratelimit-remaining-tokens": "0",
    }
    assert parse(headers) == 360.0


def test_openai_max_of_exhausted() -> None:
    headers = {
        "x-ratelimit-reset-requests": "10s",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-tokens": "20ms",
        "x-ratelimit-remaining-tokens": "0",
    }
    assert parse(headers) == 10.0


def test_openai_min_when_none_exhausted() -> None:
    headers = {
        "x-ratelimit-reset-requests": "10s",
        "x-ratelimit-remaining-requests": "3",
        "x-ratelimit-reset-tokens": "20ms",
    }
    assert parse(headers) == pytest.approx(0.02)


def test_openai_garbage_reset_skipped_within_family() -> None:
    headers = {
        "x-ratelimit-reset-requests": "soon",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-tokens": "4s",
    }
    assert parse(headers) == 4.0


def test_anthropic_resets() -> None:
    headers = {
        "anthropic-ratelimit-requests-reset": rfc3339(5),
        "anthropic-ratelimit-requests-remaining": "10",
        "anthropic-ratelimit-input-tokens-reset": rfc3339(40),
        "anthropic-ratelimit-input-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": rfc3339(20),
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": rfc3339(50),
        "anthropic-ratelimit-tokens-remaining": "100",
    }
    assert parse(headers) == pytest.approx(40.0)


def test_anthropic_min_when_none_exhausted() -> None:
    headers = {
        "anthropic-ratelimit-requests-reset": rfc3339(5),
        "anthropic-ratelimit-tokens-reset": rfc3339(50),
    }
    assert parse(headers) == pytest.approx(5.0)


@pytest.mark.parametrize(
    "value",
    ["2025-06-15T15:06:40.500+00:00", "2025-06-15t15:06:40.5z", "2025-06-15T17:06:40.5+02:00"],
)
def test_anthropic_timestamp_forms(value: str) -> None:
    when = datetime(2025, 6, 15, 15, 6, 40, 500000, tzinfo=UTC).timestamp()
    got = parse_retry_after({"anthropic-ratelimit-requests-reset": value}, when - 3)
    assert got == pytest.approx(3.0)


@pytest.mark.parametrize(
    "value", ["2025-06-15T15:06:40", "2025-06-15", "tomorrow", "", "1700000000", "-5"]
)
def test_anthropic_bad_timestamps_ignored(value: str) -> None:
    assert parse({"anthropic-ratelimit-requests-reset": value}) is None


def test_anthropic_past_reset_is_zero() -> None:
    assert parse({"anthropic-ratelimit-tokens-reset": rfc3339(-30)}) == 0.0


def test_case_insensitive_names() -> None:
    assert parse({"Retry-After": "3"}) == 3.0
    assert parse({"RETRY-AFTER-MS": "3000"}) == 3.0
    headers = CaseInsensitiveHeaders(
        {"X-RateLimit-Reset-Tokens": "2s", "X-RateLimit-Remaining-Tokens": "0"}
    )
    assert parse(headers) == 2.0


def test_httpx_headers_if_available() -> None:
    httpx = pytest.importorskip("httpx")
    headers = httpx.Headers({"Retry-After": "12", "X-Other": "1"})
    assert parse(headers) == 12.0


# --- backoff ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (1, 0.0, 0.25),
        (1, 0.5, 0.375),
        (2, 0.0, 0.5),
        (3, 0.0, 1.0),
        (10, 0.0, 4.0),  # capped at max_s=8: half fixed
        (10, 0.999, 7.996),
        (0, 0.0, 0.25),  # attempts below 1 count as 1
        (10_000, 0.0, 4.0),  # no overflow
    ],
)
def test_backoff_examples(attempt: int, rand: float, expected: float) -> None:
    assert backoff_delay(attempt, 0.5, 8.0, rand) == pytest.approx(expected)


def test_backoff_clamps_rand() -> None:
    assert backoff_delay(1, 1.0, 10.0, -3.0) == 0.5
    assert backoff_delay(1, 1.0, 10.0, 7.0) == 1.0
    assert backoff_delay(1, 1.0, 10.0, math.nan) == 0.5


@pytest.mark.parametrize(("initial", "cap"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0), (math.inf, 1.0)])
def test_backoff_rejects_bad_bounds(initial: float, cap: float) -> None:
    with pytest.raises(ValueError):
        backoff_delay(1, initial, cap, 0.5)


@given(
    attempt=st.integers(min_value=-5, max_value=5000),
    initial=st.floats(min_value=1e-3, max_value=100.0),
    cap=st.floats(min_value=1e-3, max_value=1e5),
    rand=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_backoff_bounds(attempt: int, initial: float, cap: float, rand: float) -> None:
    delay = backoff_delay(attempt, initial, cap, rand)
    ceiling = min(cap, initial * 2.0 ** min(max(attempt, 1) - 1, 1000))
    assert 0 < delay <= cap
    assert ceiling / 2 <= delay <= ceiling
    assert backoff_delay(attempt, initial, cap, 0.0) <= delay


@given(st.integers(min_value=1, max_value=60), st.floats(0.0, 1.0, exclude_max=True))
def test_backoff_ceiling_monotonic(attempt: int, rand: float) -> None:
    assert backoff_delay(attempt, 0.1, 30.0, 0.0) <= backoff_delay(attempt + 1, 0.1, 30.0, 0.0)
    assert backoff_delay(attempt, 0.1, 30.0, rand) <= backoff_delay(attempt, 0.1, 30.0, 0.0) * 2
