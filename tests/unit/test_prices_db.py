"""Prices from genai-prices, limits from the bundled table, and where a model's price
comes from (``accounting.prices_db``, ``gateway.config``)."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime
from typing import Any

import genai_prices
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accounting.prices_db import (
    KnownModel,
    PriceNotFound,
    db_context_window,
    db_price,
    guess_provider,
    known_model,
    known_models,
    parse_model_table,
    strip_date,
)
from accounting.pricing import Price, cost_micros, worst_case_micros
from accounting.usage import Usage
from gateway.config import (
    ConfigError,
    context_window_of,
    env_config,
    max_output_of,
    parse,
    price_of,
)

AT = datetime(2026, 6, 1, tzinfo=UTC)
VERSION = genai_prices.__version__
TABLE = known_models()


def genai_micros(model: str, provider: str, usage: Usage) -> int:
    """genai-prices' own price of ``usage``, rounded up to a micro-USD. Its usage
    convention is the gateway's: ``input_tokens`` is the total, cache reads and writes
    included, and 1-hour writes are part of ``cache_write_tokens``."""
    counts = {
        "input_tokens": usage.input_tokens,
        "cache_read_tokens": usage.cached_input_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "cache_write_1h_tokens": usage.cache_write_1h_tokens,
        "output_tokens": usage.output_tokens,
    }
    calc = genai_prices.calc_price(
        genai_prices.Usage(**{k: v for k, v in counts.items() if v}),
        model,
        provider_id=provider,
        genai_request_timestamp=AT,
    )
    return math.ceil(calc.total_price * 10**6)


def ours(model: str, provider: str, usage: Usage) -> int:
    return cost_micros(db_price(model, provider, AT), usage)


# ------------------------------------------------- against genai-prices, exactly


def test_openai_cached_input_matches_genai_prices() -> None:
    usage = Usage(input_tokens=10_000, output_tokens=500, cached_input_tokens=6_000)
    # 4000 fresh * $2.50 + 6000 cached * $1.25 + 500 * $10 (micro-USD)
    assert ours("gpt-4o", "openai", usage) == 10_000 + 7_500 + 5_000
    assert ours("gpt-4o", "openai", usage) == genai_micros("gpt-4o", "openai", usage)


def test_anthropic_cache_writes_and_reads_match_genai_prices() -> None:
    usage = Usage(
        input_tokens=12_345,
        output_tokens=678,
        cached_input_tokens=4_000,
        cache_write_tokens=3_001,
    )
    # 5344 * $3 + 4000 * $0.30 + 3001 * $3.75 + 678 * $15 = 38655.75 -> 38656
    assert ours("claude-sonnet-4-5", "anthropic", usage) == 38_656
    assert ours("claude-sonnet-4-5", "anthropic", usage) == genai_micros(
        "claude-sonnet-4-5", "anthropic", usage
    )


def test_long_context_and_1h_writes_match_genai_prices() -> None:
    usage = Usage(
        input_tokens=250_000,
        output_tokens=3_000,
        cached_input_tokens=100_000,
        cache_write_tokens=60_000,
        cache_write_1h_tokens=20_000,
    )
    name = "claude-sonnet-4-5-20250929"
    assert ours(name, "anthropic", usage) == genai_micros(name, "anthropic", usage)
    flat = Usage(input_tokens=200_000, output_tokens=1, cache_write_tokens=1)
    assert ours(name, "anthropic", flat) == genai_micros(name, "anthropic", flat)


@st.composite
def consistent_usage(draw: st.DrawFn) -> Usage:
    total = draw(st.integers(0, 400_000))
    cached = draw(st.integers(0, total))
    writes = draw(st.integers(0, total - cached))
    return Usage(
        input_tokens=total,
        output_tokens=draw(st.integers(0, 100_000)),
        cached_input_tokens=cached,
        cache_write_tokens=writes,
        cache_write_1h_tokens=draw(st.integers(0, writes)),
    )


@settings(max_examples=300)
@given(st.sampled_from(sorted(TABLE)), consistent_usage())
def test_every_known_model_costs_what_genai_prices_says(name: str, usage: Usage) -> None:
    provider = TABLE[name].provider
    assert ours(name, provider, usage) == genai_micros(name, provider, usage)


# ---------------------------------------------------------------- the database


def test_every_known_model_has_a_price_and_a_context_window() -> None:
    assert {"gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "text-embedding-3-small"} <= set(TABLE)
    for name, info in TABLE.items():
        price = db_price(name, info.provider, AT)
        assert price.base.input > 0, name
        assert price.source.startswith(f"genai-prices {VERSION}, {info.provider}/"), name
        window = db_context_window(name, info.provider)
        assert window is not None and 0 <= info.max_output_tokens <= window, name
        if name.startswith("text-embedding-"):
            assert price.base.output == 0 and info.max_output_tokens == 0
        else:
            assert price.base.output >= price.base.input, name


def test_source_names_the_database_and_the_date() -> None:
    assert db_price("gpt-4o", "openai", AT).source == (
        f"genai-prices {VERSION}, openai/gpt-4o, as of 2026-06-01"
    )


@pytest.mark.parametrize(
    ("dated", "undated", "provider"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o", "openai"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5", "anthropic"),
    ],
)
def test_dated_names_resolve(dated: str, undated: str, provider: str) -> None:
    price = db_price(dated, provider, AT)
    assert price == db_price(undated, provider, AT)
    assert f"{provider}/{undated} (for {dated})" in price.source
    assert strip_date(dated) == undated
    assert known_model(dated) == known_model(undated) == TABLE[undated]
    assert guess_provider(dated) == provider


def test_tiers_come_from_the_database() -> None:
    price = db_price("claude-sonnet-4-5", "anthropic", AT)
    [(start, tier)] = price.tier_rates
    assert start == 200_000
    assert (price.base.input, tier.input) == (3_000_000, 6_000_000)
    assert (price.base.cache_write, price.base.cache_write_1h) == (3_750_000, 6_000_000)
    assert worst_case_micros(price, 200_001, 0) == 200_001 * 12  # 1-hour writes above the tier


@pytest.mark.parametrize(
    ("model", "provider"),
    [("my-finetune", "openai"), ("gpt-4o", "anthropic"), ("whisper-1", "openai")],
)
def test_unknown_models_have_no_price(model: str, provider: str) -> None:
    with pytest.raises(PriceNotFound, match=model):
        db_price(model, provider, AT)


def test_unknown_provider_kind_has_no_price_nor_window() -> None:
    with pytest.raises(PriceNotFound):
        db_price("gpt-4o", "bedrock", AT)
    assert db_context_window("gpt-4o", "bedrock") is None


@pytest.mark.parametrize(
    "doc",
    [
        "[]",
        "models: []",
        "models:\n  m: 3",
        "models:\n  m: {provider: azure, max_output_tokens: 1}",
        "models:\n  m: {provider: openai, max_output_tokens: -1}",
        "models:\n  m: {provider: openai, max_output_tokens: 1, context_window: 0}",
        "models:\n  m: {provider: openai, max_output_tokens: 1, input_per_mtok: '1'}",
    ],
)
def test_parse_model_table_rejects(doc: str) -> None:
    with pytest.raises(ValueError, match=r"prices\.yaml"):
        parse_model_table(doc)


def test_model_table_entries() -> None:
    doc = "models:\n  m: {provider: anthropic, max_output_tokens: 5, context_window: 9}"
    assert parse_model_table(doc) == {"m": KnownModel("anthropic", 5, 9)}
    table = known_models()
    table.clear()
    assert known_models()


# ------------------------------------------------------- the config's price wins

CONFIG: dict[str, Any] = {
    "store": "sqlite:///tmp/x.db",
    "providers": {
        "oa": {"kind": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "K"},
        "an": {"kind": "anthropic", "base_url": "https://api.anthropic.com", "api_key_env": "K"},
    },
    "models": {
        "gpt-4o": {"provider": "oa", "upstream_model": "gpt-4o-2024-08-06"},
        "sonnet": {"provider": "an", "upstream_model": "claude-sonnet-4-5-20250929"},
        "own": {
            "provider": "oa",
            "upstream_model": "my-finetune",
            "price": {
                "input_per_mtok": "1.5",
                "output_per_mtok": 2,
                "cache_write_per_mtok": "0.0000001",
                "tiers": [{"above_input_tokens": 1000, "input_per_mtok": 3, "output_per_mtok": 4}],
            },
        },
    },
}


def config_with(**models: Any) -> dict[str, Any]:
    raw = copy.deepcopy(CONFIG)
    raw["models"].update(models)
    return raw


def test_price_sources() -> None:
    config = parse(copy.deepcopy(CONFIG))
    own = price_of(config.models["own"], "openai")
    assert own.source == "config"
    assert (own.base.input, own.base.cache_write, own.base.cached_input) == (
        1_500_000,
        1,
        1_500_000,
    )
    assert own.rates_for(1001).input == 3_000_000
    gpt = price_of(config.models["gpt-4o"], "openai", at=AT)
    assert gpt.source.startswith(f"genai-prices {VERSION}, openai/gpt-4o (for gpt-4o-2024-08-06)")
    assert gpt == price_of(config.models["gpt-4o"], at=AT)  # the kind guessed from the name
    assert price_of(config.models["sonnet"]).tier_rates


def test_limits_of_configured_models() -> None:
    config = parse(copy.deepcopy(CONFIG))
    assert max_output_of(config.models["sonnet"], config.defaults) == 64_000  # dated name
    assert max_output_of(config.models["own"], config.defaults) == 16_384  # the default
    assert context_window_of(config.models["gpt-4o"], "openai") == 128_000
    assert context_window_of(config.models["sonnet"]) == 200_000
    assert context_window_of(config.models["own"], "openai") is None
    sized = parse(config_with(own={**CONFIG["models"]["own"], "context_window": 32_000}))
    assert context_window_of(sized.models["own"], "openai") == 32_000  # the config's wins


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ({"provider": "oa", "upstream_model": "llama-3-70b"}, "models.new.price"),
        ({"provider": "an", "upstream_model": "gpt-4o"}, "models.new.price"),  # not Anthropic's
    ],
)
def test_a_model_without_any_price_is_a_config_error(model: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(config_with(new=model))
    [problem] = info.value.problems
    assert problem.startswith(f"{path}: required (genai-prices {VERSION} has no price for ")
    assert repr(model["upstream_model"]) in problem and f"set {path}" in problem


def test_config_prices_are_validated() -> None:
    bad_tiers = {"input_per_mtok": 1, "output_per_mtok": 1, "tiers": [
        {"above_input_tokens": 10, "input_per_mtok": 1, "output_per_mtok": 1},
        {"above_input_tokens": 5, "input_per_mtok": 1, "output_per_mtok": 1},
    ]}  # fmt: skip
    for price, where in [
        (bad_tiers, "models.new.price.tiers"),
        ({"input_per_mtok": 1, "output_per_mtok": 10**7}, "models.new.price.output_per_mtok"),
        ({"input_per_mtok": 1, "output_per_mtok": 1, "cache_write_per_mtok": -1}, "cache_write"),
    ]:
        with pytest.raises(ConfigError) as info:
            parse(config_with(new={"provider": "oa", "upstream_model": "x", "price": price}))
        assert any(where in problem for problem in info.value.problems), info.value.problems


def test_env_config_prices_every_model_it_serves() -> None:
    config = env_config({"OPENAI_API_KEY": "sk", "ANTHROPIC_API_KEY": "sk"})
    assert set(config.models) == set(TABLE)
    for model in config.models.values():
        assert isinstance(price_of(model, TABLE[model.upstream_model].provider), Price)
