"""The config's shape: frozen pydantic models that refuse unknown keys.

``gateway.config`` parses a YAML document into these (and is the only module that
reads the environment); every other module receives the part it needs.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ConfigError(Exception):
    """The config is unusable; ``problems`` lists each one as ``path: message``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid config:\n  " + "\n  ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_PERIOD = re.compile(r"^(\d+)([smhd])$")
_PERIOD_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def period_seconds(text: str) -> int:
    match = _PERIOD.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a period like 30d, 12h, 90m")
    return int(match.group(1)) * _PERIOD_S[match.group(2)]


class KeyConfig(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    key_env: str
    models: tuple[str, ...] | None = None
    max_workflow_budget_usd: Decimal | None = Field(default=None, ge=0, le=1_000_000_000)
    budget_usd: Decimal | None = Field(default=None, ge=0, le=1_000_000_000)
    budget_period: str = "30d"
    rpm: int | None = Field(default=None, ge=1, le=10_000_000)  # requests per minute
    tpm: int | None = Field(default=None, ge=1, le=10_000_000_000)  # tokens per minute
    max_inflight: int | None = Field(default=None, ge=1, le=1_000_000)  # requests at once

    @field_validator("budget_period")
    @classmethod
    def _period(cls, value: str) -> str:
        period_seconds(value)
        return value


class AuthConfig(_Strict):
    admin_key_env: str | None = None
    metrics_key_env: str | None = None  # when set, /metrics and /readyz details need it
    keys: tuple[KeyConfig, ...] = ()


class ProviderConfig(_Strict):
    kind: Literal["openai", "anthropic"]
    base_url: str = Field(pattern=r"^https?://")
    api_key_env: str
    connect_timeout_s: float = Field(default=5.0, gt=0)
    first_token_timeout_s: float = Field(default=120.0, gt=0)
    idle_timeout_s: float = Field(default=60.0, gt=0)
    max_connections: int = Field(default=200, ge=1)  # this provider's own limit
    # Upstream calls at once (None: max_connections); beyond, a fair queue per key.
    max_inflight: int | None = Field(default=None, ge=1, le=100_000)
    queue_timeout_s: float = Field(default=10.0, gt=0, le=3600)  # then 503 provider_busy
    anthropic_version: str = "2023-06-01"
    # fast: the lean HTTP/1.1 pool; httpx: httpx.AsyncClient (chosen anyway when a
    # proxy variable covers base_url's host, see upstream_routes).
    transport: Literal["fast", "httpx"] = "fast"
    ca_file: str | None = None  # PEM CA bundle trusted instead of the system's
    keepalive_expiry_s: float = Field(default=15.0, gt=0)  # idle pooled connections
    max_response_header_bytes: int = Field(default=64 * 1024, ge=1024)
    max_response_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)  # a body read whole
    max_event_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)  # one SSE event

    @field_validator("ca_file")
    @classmethod
    def _readable_file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"{value!r} is not a readable file")
        return value


# USD per million tokens; a million USD per MTok (a dollar a token) is far beyond any
# real price: a larger value is a typo, refused.
_MTOK_MAX = 1_000_000


class _PriceBand(_Strict):
    """USD per million tokens. Unset: cache reads and cache writes at the input price,
    1-hour cache writes at the cache-write price."""

    input_per_mtok: Decimal = Field(ge=0, le=_MTOK_MAX)
    output_per_mtok: Decimal = Field(ge=0, le=_MTOK_MAX)
    cached_input_per_mtok: Decimal | None = Field(default=None, ge=0, le=_MTOK_MAX)
    cache_write_per_mtok: Decimal | None = Field(default=None, ge=0, le=_MTOK_MAX)
    cache_write_1h_per_mtok: Decimal | None = Field(default=None, ge=0, le=_MTOK_MAX)


class PriceTierConfig(_PriceBand):
    """Prices for every token of a request whose total input exceeds the threshold."""

    above_input_tokens: int = Field(ge=0)


class PriceConfig(_PriceBand):
    """A model's own price; wins over genai-prices (``accounting.prices_db``)."""

    tiers: tuple[PriceTierConfig, ...] = ()

    @field_validator("tiers")
    @classmethod
    def _ascending(cls, tiers: tuple[PriceTierConfig, ...]) -> tuple[PriceTierConfig, ...]:
        starts = [tier.above_input_tokens for tier in tiers]
        if starts != sorted(set(starts)):
            raise ValueError("tiers must have distinct above_input_tokens in ascending order")
        return tiers


class RetryConfig(_Strict):
    max_attempts: int = Field(default=3, ge=1, le=20)
    initial_backoff_s: float = Field(default=0.5, gt=0)
    max_backoff_s: float = Field(default=20.0, gt=0)
    max_retry_after_s: float = Field(default=60.0, ge=0)


class BreakerConfig(_Strict):
    fail_max: int = Field(default=5, ge=1)
    reset_timeout_s: float = Field(default=30.0, gt=0)


class ModelConfig(_Strict):
    provider: str
    upstream_model: str
    kind: Literal["chat", "embeddings"] = "chat"
    price: PriceConfig | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    fallbacks: tuple[str, ...] = ()
    context_window_fallbacks: tuple[str, ...] = ()
    retry: RetryConfig | None = None
    breaker: BreakerConfig | None = None
    # A committed stream that breaks may be continued on this model by assistant
    # prefill (Anthropic models that accept prefill; OpenAI-compatible servers with
    # ``continue_final_message``); none: never asked to continue one.
    continuation: Literal["prefill", "none"] = "none"
    first_token_timeout_s: float | None = Field(default=None, gt=0)  # else the provider's
    idle_timeout_s: float | None = Field(default=None, gt=0)  # else the provider's
    context_window: int | None = Field(default=None, ge=1)  # tokens; else the price database's


class DefaultsConfig(_Strict):
    request_timeout_s: float = Field(default=600.0, gt=0)
    max_request_timeout_s: float = Field(default=3600.0, gt=0)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_output_tokens: int = Field(default=16384, ge=1)
    retry: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    retry_budget_ratio: float = Field(default=0.2, ge=0, le=1)
    retry_budget_min: int = Field(default=3, ge=0)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    # An abandoned plain answer is read on this long to learn what the provider billed.
    drain_timeout_s: float = Field(default=600.0, ge=0)
    # A hold outlives its request's deadline by this much (plus the drain time for
    # plain answers) before it is counted as spent: only a replica that died leaves it.
    lease_margin_s: float = Field(default=60.0, gt=0)
    # How often the store checks itself (a Redis that lost its data) and, after an
    # accepted reset, resumes.
    store_check_interval_s: float = Field(default=5.0, gt=0)


class IdempotencyConfig(_Strict):
    ttl_s: float = Field(default=86400.0, gt=0)
    derive_from_workflow_step: bool = False
    max_record_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)


class BudgetsConfig(_Strict):
    # A stream the gateway closed while the upstream was still generating (the client
    # left, a timeout, the shutdown) may have produced tokens that never reached us:
    # they are charged as this allowance on top of what arrived.
    cut_stream_allowance_tokens: int = Field(default=16, ge=0, le=100_000)
    # When a request's worst case does not fit a budget, lower (or set) its output limit
    # to what the budget can pay for; false: answer 402 instead.
    clamp_output: bool = True
    min_output_tokens: int = Field(default=256, ge=1)  # a lower clamp is refused (402)


class WorkflowsConfig(_Strict):
    stall_after_s: float = Field(default=900.0, gt=0)
    check_interval_s: float = Field(default=30.0, gt=0)
    # Bounded label values of spendgate_workflow_cost_usd{workflow} (X-Workflow-Name).
    names: tuple[str, ...] = Field(default=(), max_length=100)
    # The loop guard: the same request sent more often than this in one workflow
    # (without an Idempotency-Key) is refused with 403 loop_detected; 0 turns it off.
    max_identical_calls: int = Field(default=8, ge=0)
    # A running workflow past this multiple of its kind's median cost is flagged ...
    cost_anomaly_factor: float = Field(default=3.0, gt=1)
    # ... and, with this on, stopped (later requests 403 workflow_cancelled).
    cost_anomaly_stop: bool = False
    cancel_poll_s: float = Field(default=0.25, gt=0)  # in-flight requests learn of a cancel

    @field_validator("names")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not re.match(r"^[A-Za-z0-9_.:-]{1,64}$", name) or name == "other":
                raise ValueError(f"{name!r}: a name is 1-64 of A-Z a-z 0-9 _ . : - (not 'other')")
        return value


class ServerConfig(_Strict):
    max_connections: int = Field(default=10_000, ge=1)  # open client connections; then 503
    header_timeout_s: float = Field(default=10.0, gt=0)  # a request's headers must arrive by then
    keep_alive_timeout_s: float = Field(default=5.0, gt=0)  # idle keep-alive connections


class FileConfig(_Strict):
    store: str = "sqlite:///./spendgate.db"
    auth: AuthConfig = AuthConfig()
    providers: dict[str, ProviderConfig]
    models: dict[str, ModelConfig]
    defaults: DefaultsConfig = DefaultsConfig()
    idempotency: IdempotencyConfig = IdempotencyConfig()
    budgets: BudgetsConfig = BudgetsConfig()
    workflows: WorkflowsConfig = WorkflowsConfig()
    server: ServerConfig = ServerConfig()
