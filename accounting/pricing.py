"""Model prices and request cost: integer pico-USD rates, integer micro-USD costs.

Money is never a float here, and nothing on the request path touches a ``Decimal``.

A ``Price`` is stated in USD per million tokens (exact ``Decimal`` values from the
config, or from genai-prices: ``accounting.prices_db``) and is converted ONCE, when it
is built, into integer rates in **pico-USD (1e-12 USD) per token**: ``$2.50/MTok`` is
2,500,000 pico-USD per token. A rate finer than a whole pico-USD per token (more than six
decimals of USD per MTok) is rounded UP to the next pico, so a rate is never below the
published one (by less than 1e-12 USD per token).

Each kind of token has its own rate (``Rates``)::

    fresh input     input_tokens - cached_input_tokens - cache_write_tokens
    cached input    cache reads: cached_input_per_mtok (else the input price)
    cache write     5-minute cache writes: cache_write_per_mtok (else the input price:
                    no surcharge unless one is configured)
    cache write 1h  1-hour cache writes: cache_write_1h_per_mtok (else the cache-write price)
    output          output + partial output (reasoning tokens are output)

Tiers (long-context prices, genai-prices' threshold model): a tier applies when the
request's TOTAL input tokens (fresh + cache reads + cache writes) exceed its
``above_input_tokens``, and then its rates apply to ALL tokens of the request, output
included (Claude Sonnet 4.5 above 200k input tokens).

A cost is the exact integer sum of ``tokens * rate`` in pico-USD, converted to micro-USD
by rounding UP once per attempt (``cost_micros``): the ledger never under-counts an
attempt and, since only integers are ever summed, totals never drift. ``cost_micros``
and ``worst_case_micros`` run on every attempt: a few integer multiplications on fields
computed when the price was built.
"""

from __future__ import annotations

import decimal
import re
from dataclasses import dataclass, field
from decimal import Decimal

from accounting.usage import Usage

__all__ = [
    "Price",
    "PriceTier",
    "Rates",
    "cost_micros",
    "cost_picos",
    "max_output_within",
    "micros_to_usd",
    "output_rate_pico",
    "rate_usd_per_mtok",
    "usd_to_micros",
    "worst_case_micros",
]

# Exact arithmetic for the conversion at start: any loss of precision raises.
_EXACT = decimal.Context(
    prec=decimal.MAX_PREC,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow],
)

PICO_PER_MICRO = 1_000_000  # also: pico-USD per token for each USD per MTok
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


def _pico(per_mtok: Decimal) -> int:
    """USD per MTok -> pico-USD per token, rounded up to a whole pico."""
    scaled = per_mtok.scaleb(6, context=_EXACT)
    return int(scaled.to_integral_value(rounding=decimal.ROUND_CEILING, context=_EXACT))


@dataclass(frozen=True, slots=True)
class Rates:
    """One band's integer rates in pico-USD per token (see the module docstring).

    ``worst_input`` and ``worst_output`` are what the worst case reserves: the highest
    input rate of any kind (a request may write its whole prompt to the cache) and the
    output rate, each the highest of this band and every lower one, so that a request
    whose real input turns out smaller than its estimate is still covered.
    """

    input: int
    cached_input: int
    cache_write: int
    cache_write_1h: int
    output: int
    worst_input: int
    worst_output: int
    worst_uncached_input: int  # the worst input rate of a request that writes no cache


def _rates(band: Price | PriceTier, below: Rates | None) -> Rates:
    inp = _pico(band.input_per_mtok)
    cached = inp if band.cached_input_per_mtok is None else _pico(band.cached_input_per_mtok)
    write = inp if band.cache_write_per_mtok is None else _pico(band.cache_write_per_mtok)
    write_1h = (
        write if band.cache_write_1h_per_mtok is None else _pico(band.cache_write_1h_per_mtok)
    )
    out = _pico(band.output_per_mtok)
    worst_in, worst_out, worst_plain = max(inp, cached, write, write_1h), out, max(inp, cached)
    if below is not None:
        worst_in, worst_out = max(worst_in, below.worst_input), max(worst_out, below.worst_output)
        worst_plain = max(worst_plain, below.worst_uncached_input)
    return Rates(inp, cached, write, write_1h, out, worst_in, worst_out, worst_plain)


def _check_band(band: Price | PriceTier) -> None:
    _check_price("input_per_mtok", band.input_per_mtok)
    _check_price("output_per_mtok", band.output_per_mtok)
    for name in ("cached_input_per_mtok", "cache_write_per_mtok", "cache_write_1h_per_mtok"):
        _check_price(name, getattr(band, name), optional=True)


@dataclass(frozen=True, slots=True)
class PriceTier:
    """Prices (USD per MTok) for requests whose total input exceeds ``above_input_tokens``.

    Optional prices default as in ``Price``, within the tier: cached input and cache
    writes at the tier's input price, 1-hour writes at its cache-write price.
    """

    above_input_tokens: int
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    cache_write_1h_per_mtok: Decimal | None = None

    def __post_init__(self) -> None:
        start = self.above_input_tokens
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"above_input_tokens must be an integer >= 0, got {start!r}")
        _check_band(self)


@dataclass(frozen=True, slots=True)
class Price:
    """A model's prices in USD per million tokens, with its integer rates.

    ``cached_input_per_mtok`` None: cache reads at the input price; ``cache_write_per_mtok``
    None: cache writes at the input price; ``cache_write_1h_per_mtok`` None: 1-hour writes
    at the cache-write price. ``tiers``: long-context prices, by ascending threshold.
    ``source`` says where the price came from ("config", "genai-prices 0.2.3, ...").
    """

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    cache_write_1h_per_mtok: Decimal | None = None
    tiers: tuple[PriceTier, ...] = ()
    source: str = field(default="config", compare=False)
    # Computed once in __post_init__: the rates below the first tier, and every tier's
    # (threshold, rates) from the highest threshold down (the order lookups need).
    base: Rates = field(init=False, repr=False, compare=False)
    _tiers_down: tuple[tuple[int, Rates], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_band(self)
        tiers = tuple(self.tiers)
        if not all(isinstance(tier, PriceTier) for tier in tiers):
            raise TypeError("tiers must be PriceTier objects")
        starts = [tier.above_input_tokens for tier in tiers]
        if starts != sorted(set(starts)):
            raise ValueError("tiers must have distinct thresholds in ascending order")
        base = _rates(self, None)
        bands: list[tuple[int, Rates]] = []
        below = base
        for tier in tiers:
            below = _rates(tier, below)
            bands.append((tier.above_input_tokens, below))
        object.__setattr__(self, "tiers", tiers)
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "_tiers_down", tuple(reversed(bands)))

    @property
    def tier_rates(self) -> tuple[tuple[int, Rates], ...]:
        """(above_input_tokens, rates) of every tier, by ascending threshold."""
        return tuple(reversed(self._tiers_down))

    def rates_for(self, input_tokens: int) -> Rates:
        """The rates of the band a request with this many TOTAL input tokens falls in."""
        for start, rates in self._tiers_down:
            if input_tokens > start:
                return rates
        return self.base


def cost_picos(price: Price, usage: Usage) -> int:
    """The exact cost of ``usage`` in pico-USD (see ``cost_micros``)."""
    total = usage.input_tokens
    total = total if total is not None and total > 0 else 0
    cached = usage.cached_input_tokens
    cached = cached if cached is not None and cached > 0 else 0
    w1h = usage.cache_write_1h_tokens
    w1h = w1h if w1h is not None and w1h > 0 else 0
    w5m = usage.cache_write_tokens
    w5m = w5m - w1h if w5m is not None and w5m > w1h else 0
    fresh = total - cached - w5m - w1h
    if fresh < 0:  # parts above the whole (a garbled report): bill every part in full
        fresh, total = 0, cached + w5m + w1h
    out = usage.output_tokens
    out = out if out is not None and out > 0 else 0
    partial = usage.partial_output_tokens
    if partial is not None and partial > 0:
        out += partial
    r = price.base
    for start, rates in price._tiers_down:
        if total > start:
            r = rates
            break
    return (
        fresh * r.input
        + cached * r.cached_input
        + w5m * r.cache_write
        + w1h * r.cache_write_1h
        + out * r.output
    )


def cost_micros(price: Price, usage: Usage) -> int:
    """Cost of one attempt in integer micro-USD: the exact pico-USD sum, rounded up once.

    Fresh input (``input - cached - cache writes``, never negative) at the input rate,
    cache reads at the cached rate, cache writes at the cache-write rate (the part
    written to the 1-hour cache at the 1-hour rate), output plus partial (cut-off,
    estimated) output at the output rate, all in the tier the total input falls in.
    Unknown counts are billed as 0: callers estimate missing counts before calling this.
    """
    return -(-cost_picos(price, usage) // PICO_PER_MICRO)


def worst_case_micros(
    price: Price, prompt_tokens: int, max_output_tokens: int, *, caching: bool = True
) -> int:
    """Upper bound of an attempt's cost before it is sent, rounded up once.

    In the tier the prompt falls in, the whole prompt at the highest input rate of any
    kind (``Rates.worst_input``: a request may write its whole prompt to the cache, also
    to the 1-hour cache) and the whole output allowance at the output rate. With
    ``caching`` False (the request marks nothing for the cache, so it cannot write one)
    cache-write rates are left out. It bounds ``cost_micros`` of any usage with at most
    ``prompt_tokens`` input and ``max_output_tokens`` output. Raises ``ValueError`` on
    negative counts.
    """
    if prompt_tokens < 0 or max_output_tokens < 0:
        raise ValueError("token counts must not be negative")
    r = price.rates_for(prompt_tokens)
    rate_in = r.worst_input if caching else r.worst_uncached_input
    picos = prompt_tokens * rate_in + max_output_tokens * r.worst_output
    return -(-picos // PICO_PER_MICRO)


def max_output_within(
    price: Price, prompt_tokens: int, budget_micros: int, limit: int, *, caching: bool = True
) -> int:
    """The largest ``n <= limit`` with ``worst_case_micros(price, prompt_tokens, n) <=
    budget_micros``; 0 when even ``n = 0`` does not fit (check that case separately).

    Exact, by arithmetic: ``ceil(x / M) <= B`` holds exactly when ``x <= B * M`` for
    integers, so ``n = (B * M - prompt * worst_input) // worst_output``. A model with a
    zero output rate gets ``limit``. Raises ``ValueError`` on negative counts.
    """
    if prompt_tokens < 0 or limit < 0:
        raise ValueError("token counts must not be negative")
    r = price.rates_for(prompt_tokens)
    rate_in = r.worst_input if caching else r.worst_uncached_input
    room = budget_micros * PICO_PER_MICRO - prompt_tokens * rate_in
    if room < 0:
        return 0
    if r.worst_output == 0:
        return limit
    return min(limit, room // r.worst_output)


def output_rate_pico(price: Price, prompt_tokens: int) -> int:
    """The output rate (pico-USD per token) the worst case uses for a prompt this long."""
    return price.rates_for(prompt_tokens).worst_output


def rate_usd_per_mtok(pico: int) -> str:
    """A rate in pico-USD per token as exact USD per MTok: 2500000 -> "2.50"."""
    whole, frac = divmod(pico, PICO_PER_MICRO)
    digits = f"{frac:06d}".rstrip("0")
    return f"{whole}.{digits:0<2}"


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
