from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accounting.pricing import (
    ModelInfo,
    Price,
    bundled_prices,
    cost_micros,
    exact_cost,
    micros_to_usd,
    parse_price_table,
    usd_to_micros,
    worst_case_micros,
)
from accounting.usage import Usage

EXPECTED_MODELS = {
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o3",
    "o4-mini",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "claude-sonnet-4-5",
    "claude-opus-4-1",
    "claude-haiku-4-5",
    "claude-3-5-haiku-latest",
}

prices_st = st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False)
price_st = st.builds(
    Price,
    input_per_mtok=prices_st,
    output_per_mtok=prices_st,
    cached_input_per_mtok=st.none() | prices_st,
)
count_st = st.none() | st.integers(min_value=0, max_value=10**9)
usage_st = st.builds(
    Usage,
    input_tokens=count_st,
    output_tokens=count_st,
    cached_input_tokens=count_st,
    partial_output_tokens=count_st,
)


def manual_exact(price: Price, usage: Usage) -> Decimal:
    inp = usage.input_tokens or 0
    cached = usage.cached_input_tokens or 0
    cached_rate = (
        price.cached_input_per_mtok
        if price.cached_input_per_mtok is not None
        else price.input_per_mtok
    )
    out = (usage.output_tokens or 0) + (usage.partial_output_tokens or 0)
    return (
        price.input_per_mtok * max(0, inp - cached)
        + cached_rate * cached
        + price.output_per_mtok * out
    )


GPT4O = Price(Decimal("2.50"), Decimal("10.00"), Decimal("1.25"))


def test_cost_example() -> None:
    usage = Usage(input_tokens=1000, output_tokens=500, cached_input_tokens=200)
    assert cost_micros(GPT4O, usage) == 2000 + 250 + 5000  # 800 fresh, 200 cached, 500 out


def test_cost_rounds_up_once_per_request() -> None:
    price = Price(Decimal("0.15"), Decimal("0.60"))
    # 1 input token = 0.15 micro-USD: billed as 1, never as 0.
    assert cost_micros(price, Usage(input_tokens=1, output_tokens=0)) == 1
    # 0.15 * 10 + 0.6 * 1 = 2.1 -> 3 (one ceiling, not one per kind).
    assert cost_micros(price, Usage(input_tokens=10, output_tokens=1)) == 3
    assert cost_micros(price, Usage()) == 0


def test_cached_uses_input_price_when_no_cached_price() -> None:
    price = Price(Decimal("2"), Decimal("8"))
    usage = Usage(input_tokens=100, output_tokens=0, cached_input_tokens=40)
    assert cost_micros(price, usage) == 200


def test_cached_above_input_never_negative() -> None:
    usage = Usage(input_tokens=10, output_tokens=0, cached_input_tokens=50)
    assert cost_micros(GPT4O, usage) == 63  # 0 fresh + 50 * 1.25 = 62.5 -> 63


def test_partial_output_billed_at_output_price() -> None:
    usage = Usage(input_tokens=0, output_tokens=None, partial_output_tokens=7)
    assert cost_micros(GPT4O, usage) == 70


def test_negative_counts_billed_as_zero() -> None:
    assert cost_micros(GPT4O, Usage(input_tokens=-5, output_tokens=-1)) == 0


@given(price_st, usage_st)
def test_cost_is_ceiling_of_exact(price: Price, usage: Usage) -> None:
    cost = cost_micros(price, usage)
    exact = manual_exact(price, usage)
    assert isinstance(cost, int)
    assert exact_cost(price, usage) == exact
    assert exact <= cost < exact + 1


@given(price_st, usage_st, usage_st)
def test_cost_additive_bounds(price: Price, a: Usage, b: Usage) -> None:
    def add(x: int | None, y: int | None) -> int:
        return (x or 0) + (y or 0)

    # Keep cached within input for each part so the parts really sum to the whole.
    a = Usage(add(a.input_tokens, a.cached_input_tokens), a.output_tokens, a.cached_input_tokens)
    b = Usage(add(b.input_tokens, b.cached_input_tokens), b.output_tokens, b.cached_input_tokens)
    whole = Usage(
        add(a.input_tokens, b.input_tokens),
        add(a.output_tokens, b.output_tokens),
        add(a.cached_input_tokens, b.cached_input_tokens),
    )
    parts = cost_micros(price, a) + cost_micros(price, b)
    assert cost_micros(price, whole) <= parts <= cost_micros(price, whole) + 1


@given(price_st, st.integers(0, 10**7), st.integers(0, 10**6), usage_st)
def test_worst_case_bounds_any_real_cost(
    price: Price, prompt: int, max_out: int, usage: Usage
) -> None:
    worst = worst_case_micros(price, prompt, max_out)
    exact = price.input_per_mtok * prompt + price.output_per_mtok * max_out
    assert exact <= worst < exact + 1
    if price.cached_input_per_mtok is None or price.cached_input_per_mtok <= price.input_per_mtok:
        real = Usage(
            input_tokens=prompt,
            output_tokens=max_out,
            cached_input_tokens=min(prompt, usage.cached_input_tokens or 0),
        )
        assert cost_micros(price, real) <= worst


def test_worst_case_rejects_negative() -> None:
    with pytest.raises(ValueError):
        worst_case_micros(GPT4O, -1, 10)
    with pytest.raises(ValueError):
        worst_case_micros(GPT4O, 1, -10)


def test_huge_counts_stay_exact() -> None:
    price = Price(Decimal("0.075"), Decimal("0.000001"))
    usage = Usage(input_tokens=10**30, output_tokens=10**30 + 1)
    assert cost_micros(price, usage) == 75 * 10**27 + 10**24 + 1


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
    ],
)
def test_price_validation(bad: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        Price(**bad)  # type: ignore[arg-type]


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


def test_bundled_table() -> None:
    as_of, table = bundled_prices()
    assert as_of == "2026-11-01"
    assert set(table) >= EXPECTED_MODELS
    for name, info in table.items():
        assert isinstance(info, ModelInfo), name
        price = info.price
        assert isinstance(price.input_per_mtok, Decimal)
        assert isinstance(price.output_per_mtok, Decimal)
        assert price.input_per_mtok > 0, name
        assert info.provider in {"openai", "anthropic"}, name
        assert info.context_window > 0, name
        assert 0 <= info.max_output_tokens <= info.context_window, name
        if price.cached_input_per_mtok is not None:
            assert isinstance(price.cached_input_per_mtok, Decimal)
            assert 0 < price.cached_input_per_mtok < price.input_per_mtok, name
        if name.startswith("text-embedding-"):
            assert price.output_per_mtok == 0
            assert info.max_output_tokens == 0
        else:
            assert price.output_per_mtok >= price.input_per_mtok, name
            assert info.max_output_tokens > 0, name


def test_bundled_values_are_exact() -> None:
    _, table = bundled_prices()
    assert table["gpt-4o-mini"].price.cached_input_per_mtok == Decimal("0.075")
    assert table["gpt-4o"].price == GPT4O
    assert table["claude-sonnet-4-5"].provider == "anthropic"


def test_bundled_returns_fresh_dict() -> None:
    _, first = bundled_prices()
    first.clear()
    assert bundled_prices()[1]


@pytest.mark.parametrize(
    "doc",
    [
        "[]",
        "models: {}",
        "as_of: '2026-01-01'\nmodels: []",
        "as_of: '2026-01-01'\nmodels:\n  m: 3",
        "as_of: '2026-01-01'\nmodels:\n  m: {provider: openai, input_per_mtok: 0.1, "
        "output_per_mtok: '1', max_output_tokens: 1, context_window: 2}",
        "as_of: '2026-01-01'\nmodels:\n  m: {provider: openai, input_per_mtok: 'x', "
        "output_per_mtok: '1', max_output_tokens: 1, context_window: 2}",
        "as_of: '2026-01-01'\nmodels:\n  m: {provider: openai, input_per_mtok: '-1', "
        "output_per_mtok: '1', max_output_tokens: 1, context_window: 2}",
        "as_of: '2026-01-01'\nmodels:\n  m: {provider: openai, input_per_mtok: '1', "
        "output_per_mtok: '1', max_output_tokens: -1, context_window: 2}",
        "as_of: '2026-01-01'\nmodels:\n  m: {input_per_mtok: '1', "
        "output_per_mtok: '1', max_output_tokens: 1, context_window: 2}",
    ],
)
def test_parse_price_table_rejects(doc: str) -> None:
    with pytest.raises(ValueError):
        parse_price_table(doc)
