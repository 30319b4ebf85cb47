"""Integer rates, costs, worst cases and budget fits (``accounting.pricing``)."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accounting.pricing import (
    Price,
    PriceTier,
    Rates,
    cost_micros,
    cost_picos,
    max_output_within,
    output_rate_pico,
    rate_usd_per_mtok,
    worst_case_micros,
)
from accounting.usage import Usage

GPT4O = Price(Decimal("2.50"), Decimal("10.00"), Decimal("1.25"))
SONNET = Price(
    Decimal(3),
    Decimal(15),
    Decimal("0.30"),
    Decimal("3.75"),
    Decimal(6),
    tiers=(PriceTier(200_000, Decimal(6), Decimal("22.50"), Decimal("0.60"), Decimal("7.50")),),
)

# Prices with at most six decimals per MTok are whole pico-USD per token: exact.
mtok_st = st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False)
opt_st = st.none() | mtok_st


@st.composite
def tier_st(draw: st.DrawFn, start: int) -> PriceTier:
    return PriceTier(start, draw(mtok_st), draw(mtok_st), draw(opt_st), draw(opt_st), draw(opt_st))


@st.composite
def price_st(draw: st.DrawFn) -> Price:
    starts = sorted(draw(st.sets(st.integers(0, 10**6), max_size=3)))
    return Price(
        draw(mtok_st),
        draw(mtok_st),
        draw(opt_st),
        draw(opt_st),
        draw(opt_st),
        tiers=tuple(draw(tier_st(start)) for start in starts),
    )


count_st = st.none() | st.integers(min_value=0, max_value=10**9)
usage_st = st.builds(
    Usage,
    input_tokens=count_st,
    output_tokens=count_st,
    cached_input_tokens=count_st,
    partial_output_tokens=count_st,
    cache_write_tokens=count_st,
    cache_write_1h_tokens=count_st,
)


def band_of(price: Price, total: int) -> Price | PriceTier:
    band: Price | PriceTier = price
    for tier in price.tiers:
        if total > tier.above_input_tokens:
            band = tier
    return band


def manual_usd(price: Price, usage: Usage) -> Decimal:
    """The cost by the rules, in Decimal USD, written out independently."""
    total, cached = usage.input_tokens or 0, usage.cached_input_tokens or 0
    writes, w1h = usage.cache_write_tokens or 0, usage.cache_write_1h_tokens or 0
    w5m = max(0, writes - w1h)
    fresh = total - cached - w5m - w1h
    if fresh < 0:
        fresh, total = 0, cached + w5m + w1h
    b = band_of(price, total)
    cached_rate = b.input_per_mtok if b.cached_input_per_mtok is None else b.cached_input_per_mtok
    write_rate = b.input_per_mtok if b.cache_write_per_mtok is None else b.cache_write_per_mtok
    w1h_rate = write_rate if b.cache_write_1h_per_mtok is None else b.cache_write_1h_per_mtok
    out = (usage.output_tokens or 0) + (usage.partial_output_tokens or 0)
    per_mtok = (
        b.input_per_mtok * fresh
        + cached_rate * cached
        + write_rate * w5m
        + w1h_rate * w1h
        + b.output_per_mtok * out
    )
    return per_mtok / 10**6


# ------------------------------------------------------------------------ rates


def test_integer_rates_from_decimals() -> None:
    assert GPT4O.base == Rates(
        input=2_500_000,
        cached_input=1_250_000,
        cache_write=2_500_000,  # no surcharge unless configured
        cache_write_1h=2_500_000,  # 1-hour writes default to the cache-write price
        output=10_000_000,
        worst_input=2_500_000,
        worst_output=10_000_000,
        worst_uncached_input=2_500_000,
    )
    assert SONNET.base.cache_write == 3_750_000 and SONNET.base.cache_write_1h == 6_000_000
    assert SONNET.base.worst_input == 6_000_000  # the highest input rate of any kind
    [(start, tier)] = SONNET.tier_rates
    assert start == 200_000
    assert (tier.input, tier.cached_input, tier.cache_write) == (6_000_000, 600_000, 7_500_000)
    assert tier.cache_write_1h == 7_500_000  # the tier's own cache-write price


@pytest.mark.parametrize(
    ("per_mtok", "pico"),
    [
        ("0.075", 75_000),
        ("0.000001", 1),
        ("0.0000001", 1),  # a tenth of a pico: rounded UP
        ("2.0000001", 2_000_001),
        ("0.0000010", 1),
        ("0", 0),
        ("1000000", 10**12),
    ],
)
def test_rates_round_up_to_a_whole_pico(per_mtok: str, pico: int) -> None:
    assert Price(Decimal(per_mtok), Decimal(0)).base.input == pico


def test_rate_display() -> None:
    assert rate_usd_per_mtok(2_500_000) == "2.50"
    assert rate_usd_per_mtok(75_000) == "0.075"
    assert rate_usd_per_mtok(1) == "0.000001"
    assert rate_usd_per_mtok(0) == "0.00"
    assert rate_usd_per_mtok(22_500_000) == "22.50"


# ------------------------------------------------------------------------ costs


def test_cost_example() -> None:
    usage = Usage(input_tokens=1000, output_tokens=500, cached_input_tokens=200)
    assert cost_micros(GPT4O, usage) == 2000 + 250 + 5000  # 800 fresh, 200 cached, 500 out


def test_cache_reads_and_writes_at_their_own_rates() -> None:
    usage = Usage(
        input_tokens=10_000,
        output_tokens=100,
        cached_input_tokens=2_000,
        cache_write_tokens=3_000,
        cache_write_1h_tokens=1_000,
    )
    # 5000 fresh * 3 + 2000 read * 0.30 + 2000 5m-writes * 3.75 + 1000 1h-writes * 6 + 100 * 15
    assert cost_micros(SONNET, usage) == 15_000 + 600 + 7_500 + 6_000 + 1_500


def test_cost_rounds_up_once_per_attempt() -> None:
    price = Price(Decimal("0.15"), Decimal("0.60"))
    assert cost_micros(price, Usage(input_tokens=1, output_tokens=0)) == 1  # 0.15 -> 1
    # 0.15 * 10 + 0.6 * 1 = 2.1 -> 3 (one ceiling, not one per kind).
    assert cost_micros(price, Usage(input_tokens=10, output_tokens=1)) == 3
    assert cost_picos(price, Usage(input_tokens=10, output_tokens=1)) == 2_100_000
    assert cost_micros(price, Usage()) == 0


def test_a_prompt_above_the_tier_prices_everything_at_the_tier_rate() -> None:
    at = Usage(input_tokens=200_000, output_tokens=1_000)
    above = Usage(input_tokens=200_001, output_tokens=1_000)
    assert cost_micros(SONNET, at) == 200_000 * 3 + 1_000 * 15
    assert cost_micros(SONNET, above) == 200_001 * 6 + 1_000 * 45 // 2
    cached = Usage(input_tokens=300_000, output_tokens=0, cached_input_tokens=250_000)
    assert cost_micros(SONNET, cached) == 50_000 * 6 + 250_000 * 6 // 10  # total input decides


def test_cached_uses_input_price_when_no_cached_price() -> None:
    price = Price(Decimal(2), Decimal(8))
    usage = Usage(input_tokens=100, output_tokens=0, cached_input_tokens=40, cache_write_tokens=10)
    assert cost_micros(price, usage) == 200


def test_parts_above_the_whole_are_billed_in_full() -> None:
    usage = Usage(input_tokens=10, output_tokens=0, cached_input_tokens=50)
    assert cost_micros(GPT4O, usage) == 63  # 0 fresh + 50 * 1.25 = 62.5 -> 63


def test_partial_output_billed_at_output_price() -> None:
    usage = Usage(input_tokens=0, output_tokens=None, partial_output_tokens=7)
    assert cost_micros(GPT4O, usage) == 70


def test_negative_counts_billed_as_zero() -> None:
    assert cost_micros(GPT4O, Usage(input_tokens=-5, output_tokens=-1)) == 0


def test_huge_counts_stay_exact() -> None:
    price = Price(Decimal("0.075"), Decimal("0.000001"))
    usage = Usage(input_tokens=10**30, output_tokens=10**30 + 1)
    assert cost_micros(price, usage) == 75 * 10**27 + 10**24 + 1


@given(price_st(), usage_st)
def test_cost_is_the_ceiling_of_the_exact_cost(price: Price, usage: Usage) -> None:
    exact = manual_usd(price, usage) * 10**6
    cost = cost_micros(price, usage)
    assert isinstance(cost, int)
    assert cost_picos(price, usage) == exact * 10**6
    assert cost == math.ceil(exact)


# ------------------------------------------------------------------- worst case


@st.composite
def bounded_usage(draw: st.DrawFn, prompt: int, max_out: int) -> Usage:
    total = draw(st.integers(0, prompt))
    cached = draw(st.integers(0, total))
    writes = draw(st.integers(0, total - cached))
    out = draw(st.integers(0, max_out))
    return Usage(
        input_tokens=total,
        output_tokens=out,
        cached_input_tokens=cached,
        partial_output_tokens=draw(st.integers(0, max_out - out)),
        cache_write_tokens=writes,
        cache_write_1h_tokens=draw(st.integers(0, writes)),
    )


@given(price_st(), st.integers(0, 3 * 10**6), st.integers(0, 10**6), st.data())
def test_worst_case_bounds_any_cost_within_its_bounds(
    price: Price, prompt: int, max_out: int, data: st.DataObject
) -> None:
    worst = worst_case_micros(price, prompt, max_out)
    usage = data.draw(bounded_usage(prompt, max_out))
    assert cost_micros(price, usage) <= worst


def test_worst_case_example() -> None:
    # The whole prompt at the highest input rate (1-hour cache writes), the output allowance.
    assert worst_case_micros(SONNET, 1_000, 100) == 1_000 * 6 + 100 * 15
    # Above the tier: its highest input rate (7.50, its writes; no 1-hour price set).
    assert worst_case_micros(SONNET, 200_001, 100) == -(-(200_001 * 15 + 100 * 45) // 2)
    assert worst_case_micros(GPT4O, 1, 0) == 3  # 2.5 -> 3, rounded up once


def test_worst_case_covers_a_cheaper_higher_tier() -> None:
    """A (configured) tier cheaper than the base: a prompt estimated above it may turn
    out below it, so the worst case keeps the highest rate of the lower bands."""
    price = Price(Decimal(10), Decimal(20), tiers=(PriceTier(100, Decimal(1), Decimal(2)),))
    assert worst_case_micros(price, 200, 10) == 200 * 10 + 10 * 20
    assert cost_micros(price, Usage(100, 10)) == 100 * 10 + 10 * 20
    assert cost_micros(price, Usage(200, 10)) == 200 + 20


def test_worst_case_rejects_negative() -> None:
    with pytest.raises(ValueError):
        worst_case_micros(GPT4O, -1, 10)
    with pytest.raises(ValueError):
        worst_case_micros(GPT4O, 1, -10)


# ------------------------------------------------------------ max_output_within


@given(price_st(), st.integers(0, 3 * 10**6), st.integers(-10, 10**7), st.integers(0, 10**7))
def test_max_output_within_is_exact(price: Price, prompt: int, budget: int, limit: int) -> None:
    n = max_output_within(price, prompt, budget, limit)
    assert 0 <= n <= limit
    if worst_case_micros(price, prompt, 0) > budget:
        assert n == 0
        return
    assert worst_case_micros(price, prompt, n) <= budget
    assert n == limit or worst_case_micros(price, prompt, n + 1) > budget


def test_max_output_within_examples() -> None:
    # gpt-4o: 1000 prompt tokens = 2500 micro-USD; each output token 10.
    assert max_output_within(GPT4O, 1_000, 2_500 + 105, 16_384) == 10
    assert max_output_within(GPT4O, 1_000, 2_499, 16_384) == 0
    assert max_output_within(GPT4O, 1_000, 10**9, 16_384) == 16_384
    assert max_output_within(Price(Decimal(1), Decimal(0)), 10, 10, 50) == 50
    assert output_rate_pico(SONNET, 10) == 15_000_000
    assert output_rate_pico(SONNET, 200_001) == 22_500_000
    with pytest.raises(ValueError):
        max_output_within(GPT4O, -1, 10, 10)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"input_per_mtok": 1.5, "output_per_mtok": Decimal(1)}, TypeError),
        ({"input_per_mtok": Decimal(-1), "output_per_mtok": Decimal(1)}, ValueError),
        ({"input_per_mtok": Decimal("NaN"), "output_per_mtok": Decimal(1)}, ValueError),
        ({"input_per_mtok": Decimal(1), "output_per_mtok": Decimal("Infinity")}, ValueError),
        (
            {
                "input_per_mtok": Decimal(1),
                "output_per_mtok": Decimal(1),
                "cached_input_per_mtok": Decimal("-0.1"),
            },
            ValueError,
        ),
        (
            {
                "input_per_mtok": Decimal(1),
                "output_per_mtok": Decimal(1),
                "cache_write_per_mtok": 2,
            },
            TypeError,
        ),
        (
            {
                "input_per_mtok": Decimal(1),
                "output_per_mtok": Decimal(1),
                "tiers": (
                    PriceTier(10, Decimal(1), Decimal(1)),
                    PriceTier(10, Decimal(2), Decimal(2)),
                ),
            },
            ValueError,
        ),
        (
            {"input_per_mtok": Decimal(1), "output_per_mtok": Decimal(1), "tiers": ({},)},
            TypeError,
        ),
    ],
)
def test_price_validation(bad: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        Price(**bad)  # type: ignore[arg-type]


def test_tier_validation() -> None:
    with pytest.raises(ValueError):
        PriceTier(-1, Decimal(1), Decimal(1))
    with pytest.raises(ValueError):
        PriceTier(True, Decimal(1), Decimal(1))


def test_prices_compare_by_value_not_source() -> None:
    again = Price(Decimal("2.5"), Decimal(10), Decimal("1.25"), source="elsewhere")
    assert again == GPT4O and again.source == "elsewhere" and GPT4O.source == "config"


def test_a_request_that_marks_nothing_for_the_cache_is_not_reserved_cache_writes() -> None:
    """Only a request with cache_control can be billed cache writes (1.25x-2x input)."""
    sonnet = Price(
        Decimal(3), Decimal(15), cache_write_per_mtok=Decimal("3.75"),
        cache_write_1h_per_mtok=Decimal(6),
    )  # fmt: skip
    assert worst_case_micros(sonnet, 1000, 0, caching=True) == 6000
    assert worst_case_micros(sonnet, 1000, 0, caching=False) == 3000
    assert max_output_within(sonnet, 1000, 4500, 10**6, caching=False) == 100
