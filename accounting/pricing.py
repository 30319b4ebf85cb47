"""Model prices and request cost in integer micro-USD.

Money is never a float here. Prices are ``Decimal`` USD per million tokens, which is
numerically the same as micro-USD per token, so a cost is ``tokens * price`` with no
scaling. Every cost is computed exactly and rounded ONCE, up to a whole micro-USD, at
the end of a request: the ledger never under-counts a request and, because only
integers are ever summed, totals never drift.

``Usage.input_tokens`` follows the OpenAI convention: it INCLUDES cached input tokens.
Provider adapters whose upstream reports cache reads separately (Anthropic) add them
back before building a ``Usage``.
"""

from __future__ import annotations

import decimal
import re
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Any

import yaml

from accounting.usage import Usage

__all__ = [
    "ModelInfo",
    "Price",
    "bundled_prices",
    "cost_micros",
    "exact_cost",
    "micros_to_usd",
    "parse_price_table",
    "usd_to_micros",
    "worst_case_micros",
]

# Exact arithmetic: enough precision for any product of a price and a token count,
# and any loss of precision raises instead of rounding silently.
_EXACT = decimal.Context(
    prec=decimal.MAX_PREC,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow],
)

_MICROS_PER_USD = 1_000_000
_MAX_USD_TEXT = 40
_USD_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)


def _check_price(name: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite() or value < 0:
        raise ValueError(f"{name} must be a finite, non-negative Decimal, got {value}")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens (equivalently: micro-USD per token)."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    # Price of input tokens served from the provider's prompt cache; None = no
    # discount, cached input is billed at ``input_per_mtok``.
    cached_input_per_mtok: Decimal | None = None

    def __post_init__(self) -> None:
        _check_price("input_per_mtok", self.input_per_mtok)
        _check_price("output_per_mtok", self.output_per_mtok)
        _check_price("cached_input_per_mtok", self.cached_input_per_mtok, optional=True)

    @property
    def cached_rate(self) -> Decimal:
        """The rate cached input is billed at."""
        if self.cached_input_per_mtok is None:
            return self.input_per_mtok
        return self.cached_input_per_mtok


@dataclass(frozen=True, slots=True)
class ModelInfo:
    price: Price
    max_output_tokens: int
    context_window: int
    provider: str


def _ceil_micros(exact: Decimal) -> int:
    return int(exact.to_integral_value(rounding=decimal.ROUND_CEILING, context=_EXACT))


def _count(value: int | None) -> int:
    """Unknown (None) and nonsensical negative counts are billed as 0."""
    return value if value is not None and value > 0 else 0


def exact_cost(price: Price, usage: Usage) -> Decimal:
    """The unrounded cost in micro-USD (a Decimal); see ``cost_micros``."""
    total_input = _count(usage.input_tokens)
    cached = _count(usage.cached_input_tokens)
    fresh = max(0, total_input - cached)
    output = _count(usage.output_tokens) + _count(usage.partial_output_tokens)
    c = _EXACT
    return c.add(
        c.add(c.multiply(price.input_per_mtok, fresh), c.multiply(price.cached_rate, cached)),
        c.multiply(price.output_per_mtok, output),
    )


def cost_micros(price: Price, usage: Usage) -> int:
    """Cost of one request in integer micro-USD, rounded up once.

    Non-cached input (``input - cached``, never negative) is billed at the input price,
    cached input at the cached price (the input price when the model has none), output
    plus partial (cut-off, estimated) output at the output price. Unknown counts are
    billed as 0: callers estimate missing counts before calling this.
    """
    return _ceil_micros(exact_cost(price, usage))


def worst_case_micros(price: Price, prompt_tokens: int, max_output_tokens: int) -> int:
    """Upper bound of a request's cost before it is sent, rounded up once.

    The whole prompt is billed at the (uncached) input price and the full output
    allowance at the output price. Raises ``ValueError`` on negative counts.
    """
    if prompt_tokens < 0 or max_output_tokens < 0:
        raise ValueError("token counts must not be negative")
    c = _EXACT
    exact = c.add(
        c.multiply(price.input_per_mtok, prompt_tokens),
        c.multiply(price.output_per_mtok, max_output_tokens),
    )
    return _ceil_micros(exact)


def usd_to_micros(text: str) -> int:
    """Parse a USD amount ("5", "0.25", "12.", ".5") into integer micro-USD.

    Plain decimal notation only, optionally surrounded by whitespace: no sign, no
    exponent, no thousands separators, ASCII digits only. Digits beyond the sixth
    decimal are truncated (rounded DOWN to a whole micro-USD): these values are caps
    and limits, and a cap rounded down is never exceeded. Raises ``ValueError`` for
    empty, negative, non-finite or malformed input.
    """
    if not isinstance(text, str):
        raise ValueError(f"USD amount must be a string, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise ValueError("USD amount is empty")
    if len(stripped) > _MAX_USD_TEXT:
        raise ValueError(f"USD amount is too long ({len(stripped)} characters)")
    if not _USD_RE.fullmatch(stripped):
        raise ValueError(
            f"invalid USD amount {text!r}: expected a non-negative plain decimal like 2.50"
        )
    whole, _, frac = stripped.partition(".")
    micros_frac = (frac + "000000")[:6]
    return int(whole or "0") * _MICROS_PER_USD + int(micros_frac)


def micros_to_usd(m: int) -> str:
    """Exact USD string with six decimals: 1250 -> "0.001250", -5 -> "-0.000005"."""
    sign = "-" if m < 0 else ""
    whole, frac = divmod(abs(m), _MICROS_PER_USD)
    return f"{sign}{whole}.{frac:06d}"


def _decimal_field(entry: dict[str, Any], key: str, model: str) -> Decimal:
    raw = entry.get(key)
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        # Floats are refused: YAML floats are binary and would not be exact.
        raise ValueError(f"prices.yaml: {model}.{key} must be a quoted decimal string")
    try:
        value = Decimal(str(raw))
    except decimal.InvalidOperation as exc:
        raise ValueError(f"prices.yaml: {model}.{key} is not a decimal: {raw!r}") from exc
    if not value.is_finite() or value < 0:
        raise ValueError(f"prices.yaml: {model}.{key} must be finite and >= 0")
    return value


def _int_field(entry: dict[str, Any], key: str, model: str, minimum: int) -> int:
    raw = entry.get(key)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
        raise ValueError(f"prices.yaml: {model}.{key} must be an integer >= {minimum}")
    return raw


def _model_info(model: str, entry: object) -> ModelInfo:
    if not isinstance(entry, dict):
        raise ValueError(f"prices.yaml: entry for {model} must be a mapping")
    cached = None
    if entry.get("cached_input_per_mtok") is not None:
        cached = _decimal_field(entry, "cached_input_per_mtok", model)
    provider = entry.get("provider")
    if not isinstance(provider, str) or not provider:
        raise ValueError(f"prices.yaml: {model}.provider must be a non-empty string")
    return ModelInfo(
        price=Price(
            input_per_mtok=_decimal_field(entry, "input_per_mtok", model),
            output_per_mtok=_decimal_field(entry, "output_per_mtok", model),
            cached_input_per_mtok=cached,
        ),
        max_output_tokens=_int_field(entry, "max_output_tokens", model, 0),
        context_window=_int_field(entry, "context_window", model, 1),
        provider=provider,
    )


def parse_price_table(text: str) -> tuple[str, dict[str, ModelInfo]]:
    """Parse a prices document (the format of the bundled ``prices.yaml``)."""
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise ValueError("prices.yaml: top level must be a mapping")
    as_of = doc.get("as_of")
    if not isinstance(as_of, str) or not as_of:
        raise ValueError("prices.yaml: as_of must be a quoted date string")
    models = doc.get("models")
    if not isinstance(models, dict):
        raise ValueError("prices.yaml: models must be a mapping")
    table = {str(name): _model_info(str(name), entry) for name, entry in models.items()}
    return as_of, table


def bundled_prices() -> tuple[str, dict[str, ModelInfo]]:
    """(as_of date, table) from the list prices shipped with the package.

    Returns a fresh dict on every call: callers may extend or override it.
    """
    text = resources.files("accounting").joinpath("prices.yaml").read_text(encoding="utf-8")
    return parse_price_table(text)
