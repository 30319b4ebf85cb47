"""USD amounts in and out: caps parsed to micro-USD (rounded down), costs printed exactly."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accounting.pricing import micros_to_usd, usd_to_micros


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("5", 5_000_000),
        ("0.25", 250_000),
        ("0", 0),
        ("12.", 12_000_000),
        (".5", 500_000),
        (" 1.000001 ", 1_000_001),
        ("0.000001", 1),
        ("0.0000019", 1),  # sub-micro digits are truncated
        ("0.0000009", 0),
        ("007.50", 7_500_000),
    ],
)
def test_usd_to_micros(text: str, micros: int) -> None:
    assert usd_to_micros(text) == micros


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "-1",
        "+1",
        "1e-3",
        "1E3",
        "NaN",
        "nan",
        "inf",
        "Infinity",
        "abc",
        "1.2.3",
        "1,000",
        "1_000",
        "$5",
        ".",
        "0x10",
        "١٢",
        "5 USD",
        "1" * 41,
    ],
)
def test_usd_to_micros_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        usd_to_micros(text)


def test_usd_to_micros_rejects_non_string() -> None:
    with pytest.raises(ValueError):
        usd_to_micros(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (1250, "0.001250"),
        (12_000_000, "12.000000"),
        (0, "0.000000"),
        (-5, "-0.000005"),
        (-12_345_678, "-12.345678"),
    ],
)
def test_micros_to_usd(micros: int, text: str) -> None:
    assert micros_to_usd(micros) == text


@given(st.integers(min_value=0, max_value=10**20))
def test_round_trip_micros(m: int) -> None:
    text = micros_to_usd(m)
    assert usd_to_micros(text) == m
    assert Decimal(text) == Decimal(m) / 1_000_000


@given(st.integers(min_value=-(10**20), max_value=10**20))
def test_micros_to_usd_is_exact(m: int) -> None:
    assert Decimal(micros_to_usd(m)) * 1_000_000 == m


@given(st.decimals(min_value=0, max_value=10**9, places=9, allow_nan=False))
def test_usd_to_micros_floors(value: Decimal) -> None:
    micros = usd_to_micros(f"{value:f}")
    assert micros <= value * 1_000_000 < micros + 1
