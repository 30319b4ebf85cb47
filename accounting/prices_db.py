"""Where prices and model limits come from when the config does not say.

Prices: genai-prices (Pydantic's maintained price database: dated prices, cache read
and write rates, tiered long-context prices), ONLY the snapshot bundled in the
installed package: nothing is ever downloaded (``UpdatePrices`` is never started). A
model's price is looked up once, at start, for the start time, and converted into a
``Price`` (integer rates); the request path never calls genai-prices. Only token prices
are taken (input, cache read, cache write 5m/1h, output, with their tiers); per-request,
per-search, image and audio prices and service-tier variants are not modelled (image and
audio tokens that a provider counts in its prompt or completion tokens are billed at
the text rates). Dated names (``gpt-4o-2024-08-06``, ``claude-sonnet-4-5-20250929``)
resolve through genai-prices' own matching.

Limits: the bundled ``prices.yaml`` keeps what genai-prices does not have: each known
model's provider and ``max_output_tokens`` (and optionally a ``context_window``, used
only when genai-prices has none). A dated name finds its undated entry.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from typing import Any

import yaml

from accounting.pricing import Price, PriceTier

__all__ = [
    "PROVIDER_IDS",
    "KnownModel",
    "PriceNotFound",
    "db_context_window",
    "db_price",
    "db_version",
    "guess_provider",
    "known_model",
    "known_models",
    "parse_model_table",
    "strip_date",
]

# The gateway's provider kinds and genai-prices' provider ids.
PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic"}
# genai-prices price keys -> PriceTier/Price field names (all USD per MTok).
_KINDS = {
    "input_mtok": "input_per_mtok",
    "output_mtok": "output_per_mtok",
    "cache_read_mtok": "cached_input_per_mtok",
    "cache_write_mtok": "cache_write_per_mtok",
    "cache_write_1h_mtok": "cache_write_1h_per_mtok",
}
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")


class PriceNotFound(LookupError):
    """genai-prices has no token price for this model at this provider."""


@dataclass(frozen=True, slots=True)
class KnownModel:
    provider: str  # the provider kind whose key serves it (``env_config``)
    max_output_tokens: int
    context_window: int | None = None


def strip_date(name: str) -> str:
    """The name without a date suffix: ``gpt-4o-2024-08-06`` -> ``gpt-4o``,
    ``claude-sonnet-4-5-20250929`` -> ``claude-sonnet-4-5``."""
    return _DATE_SUFFIX.sub("", name)


def guess_provider(name: str) -> str:
    """The provider kind a bare model name most likely belongs to."""
    known = known_model(name)
    if known is not None:
        return known.provider
    return "anthropic" if name.lower().startswith("claude") else "openai"


def db_version() -> str:
    import genai_prices

    return str(genai_prices.__version__)


def _find(model: str, provider_kind: str) -> tuple[Any, Any] | None:
    """(genai-prices Provider, ModelInfo), or None when it does not know the model."""
    from genai_prices.data_snapshot import get_snapshot

    provider_id = PROVIDER_IDS.get(provider_kind)
    if provider_id is None:
        return None
    try:
        found: tuple[Any, Any] = get_snapshot().find_provider_model(model, None, provider_id, None)
    except LookupError:
        return None
    return found


def _at_start(value: Any, start: int) -> Decimal | None:
    """A genai-prices price (Decimal or TieredPrices) for inputs above ``start`` (-1: base)."""
    from genai_prices.types import TieredPrices

    if not isinstance(value, TieredPrices):
        return value if isinstance(value, Decimal) else None
    chosen: Decimal = value.base
    for tier in value.tiers:
        if tier.start <= start:
            chosen = tier.price
    return chosen


def _band(model_price: Any, start: int) -> dict[str, Decimal | None]:
    band = {field: _at_start(getattr(model_price, key), start) for key, field in _KINDS.items()}
    if band["output_per_mtok"] is None:
        band["output_per_mtok"] = Decimal(0)  # embeddings: no output at all
    return band


def _convert(model_price: Any, source: str) -> Price:
    from genai_prices.types import TieredPrices

    starts = sorted(
        {
            tier.start
            for key in _KINDS
            if isinstance(value := getattr(model_price, key), TieredPrices)
            for tier in value.tiers
        }
    )
    tiers = tuple(PriceTier(start, **_band(model_price, start)) for start in starts)  # type: ignore[arg-type]
    return Price(**_band(model_price, -1), tiers=tiers, source=source)  # type: ignore[arg-type]


def db_price(model: str, provider_kind: str, at: datetime | None = None) -> Price:
    """The genai-prices price of ``model`` at ``provider_kind`` for the time ``at``
    (default now); raises ``PriceNotFound`` when genai-prices has no token price."""
    at = at or datetime.now(tz=UTC)
    found = _find(model, provider_kind)
    if found is None:
        raise PriceNotFound(
            f"genai-prices {db_version()} has no price for {model!r} at provider "
            f"{PROVIDER_IDS.get(provider_kind, provider_kind)!r}"
        )
    provider, info = found
    model_price = info.get_prices(at)
    if _at_start(model_price.input_mtok, -1) is None:
        raise PriceNotFound(
            f"genai-prices {db_version()} has no token price for {model!r} ({info.id})"
        )
    matched = "" if info.id == model.lower() else f" (for {model})"
    source = f"genai-prices {db_version()}, {provider.id}/{info.id}{matched}, as of {at:%Y-%m-%d}"
    return _convert(model_price, source)


def db_context_window(model: str, provider_kind: str) -> int | None:
    """genai-prices' context window of ``model``, if it knows one."""
    found = _find(model, provider_kind)
    window = found[1].context_window if found is not None else None
    return window if isinstance(window, int) and window > 0 else None


def _int_field(entry: dict[str, Any], key: str, model: str, minimum: int) -> int:
    raw = entry.get(key)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
        raise ValueError(f"prices.yaml: {model}.{key} must be an integer >= {minimum}")
    return raw


def _known(model: str, entry: object) -> KnownModel:
    if not isinstance(entry, dict):
        raise ValueError(f"prices.yaml: entry for {model} must be a mapping")
    unknown = sorted(set(entry) - {"provider", "max_output_tokens", "context_window"})
    if unknown:
        raise ValueError(f"prices.yaml: {model}: unknown keys {unknown}")
    provider = entry.get("provider")
    if provider not in PROVIDER_IDS:
        raise ValueError(f"prices.yaml: {model}.provider must be one of {sorted(PROVIDER_IDS)}")
    window = None
    if entry.get("context_window") is not None:
        window = _int_field(entry, "context_window", model, 1)
    return KnownModel(provider, _int_field(entry, "max_output_tokens", model, 0), window)


def parse_model_table(text: str) -> dict[str, KnownModel]:
    """Parse a model table (the format of the bundled ``prices.yaml``)."""
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise ValueError("prices.yaml: expected a mapping with a 'models' mapping")
    return {str(name): _known(str(name), entry) for name, entry in doc["models"].items()}


@functools.cache
def _bundled() -> dict[str, KnownModel]:
    text = resources.files("accounting").joinpath("prices.yaml").read_text(encoding="utf-8")
    return parse_model_table(text)


def known_models() -> dict[str, KnownModel]:
    """The bundled model table (a fresh dict: callers may change it)."""
    return dict(_bundled())


def known_model(name: str) -> KnownModel | None:
    """The table's entry for ``name``, or for its undated name."""
    table = _bundled()
    return table.get(name) or table.get(strip_date(name))
