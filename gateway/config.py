"""The YAML config, parsed once at start into frozen types.

Unknown keys, wrong types, dangling references and missing secrets are refused at
boot with a message naming the key path (``models.gpt-4o.retry.max_attempts: ...``).
This module is the only place that reads the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from accounting.pricing import Price, bundled_prices


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
    max_workflow_budget_usd: Decimal | None = Field(default=None, ge=0)
    budget_usd: Decimal | None = Field(default=None, ge=0)
    budget_period: str = "30d"

    @field_validator("budget_period")
    @classmethod
    def _period(cls, value: str) -> str:
        period_seconds(value)
        return value


class AuthConfig(_Strict):
    admin_key_env: str | None = None
    keys: tuple[KeyConfig, ...] = ()


class ProviderConfig(_Strict):
    kind: Literal["openai", "anthropic"]
    base_url: str = Field(pattern=r"^https?://")
    api_key_env: str
    connect_timeout_s: float = Field(default=5.0, gt=0)
    first_token_timeout_s: float = Field(default=120.0, gt=0)
    idle_timeout_s: float = Field(default=60.0, gt=0)
    max_connections: int = Field(default=200, ge=1)
    anthropic_version: str = "2023-06-01"


class PriceConfig(_Strict):
    input_per_mtok: Decimal = Field(ge=0)
    output_per_mtok: Decimal = Field(ge=0)
    cached_input_per_mtok: Decimal | None = Field(default=None, ge=0)


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


class WorkflowsConfig(_Strict):
    stall_after_s: float = Field(default=900.0, gt=0)
    check_interval_s: float = Field(default=30.0, gt=0)


class FileConfig(_Strict):
    store: str = "sqlite:///./spendgate.db"
    auth: AuthConfig = AuthConfig()
    providers: dict[str, ProviderConfig]
    models: dict[str, ModelConfig]
    defaults: DefaultsConfig = DefaultsConfig()
    idempotency: IdempotencyConfig = IdempotencyConfig()
    budgets: BudgetsConfig = BudgetsConfig()
    workflows: WorkflowsConfig = WorkflowsConfig()


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse(raw: object) -> FileConfig:
    """Validate the raw YAML document; raise ConfigError naming every bad key path."""
    if not isinstance(raw, Mapping):
        raise ConfigError(["(top level): expected a mapping of config keys"])
    try:
        config = FileConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([f"{_loc(err['loc'])}: {err['msg']}" for err in exc.errors()]) from None
    problems = _check_references(config)
    if problems:
        raise ConfigError(problems)
    return config


def _check_references(config: FileConfig) -> list[str]:
    problems: list[str] = []
    table = bundled_prices()[1]
    for name, model in config.models.items():
        path = f"models.{name}"
        if model.provider not in config.providers:
            problems.append(f"{path}.provider: no provider named {model.provider!r}")
        for field in ("fallbacks", "context_window_fallbacks"):
            for target in getattr(model, field):
                if target not in config.models:
                    problems.append(f"{path}.{field}: no model named {target!r}")
                elif target == name:
                    problems.append(f"{path}.{field}: a model cannot fall back to itself")
        if model.price is None and model.upstream_model not in table:
            problems.append(
                f"{path}.price: required (no bundled price for {model.upstream_model!r})"
            )
    for index, key in enumerate(config.auth.keys):
        for allowed in key.models or ():
            if allowed not in config.models:
                problems.append(f"auth.keys.{index}.models: no model named {allowed!r}")
    names = [key.name for key in config.auth.keys]
    if len(set(names)) != len(names):
        problems.append("auth.keys: key names must be unique")
    return problems


def load_file(path: str | Path) -> FileConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML ({exc})"]) from None
    return parse(raw if raw is not None else {})


def price_of(model: ModelConfig) -> Price:
    if model.price is not None:
        p = model.price
        return Price(p.input_per_mtok, p.output_per_mtok, p.cached_input_per_mtok)
    return bundled_prices()[1][model.upstream_model].price


def max_output_of(model: ModelConfig, defaults: DefaultsConfig) -> int:
    if model.max_output_tokens is not None:
        return model.max_output_tokens
    info = bundled_prices()[1].get(model.upstream_model)
    return info.max_output_tokens if info is not None else defaults.max_output_tokens


def env_config(environ: Mapping[str, str]) -> FileConfig:
    """The config used with no file: every provider whose key is in the environment."""
    table = bundled_prices()[1]
    providers: dict[str, Any] = {}
    if environ.get("OPENAI_API_KEY"):
        providers["openai"] = {
            "kind": "openai",
            "base_url": environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"),
            "api_key_env": "OPENAI_API_KEY",
        }
    if environ.get("ANTHROPIC_API_KEY"):
        providers["anthropic"] = {
            "kind": "anthropic",
            "base_url": "https://api.anthropic.com",
            "api_key_env": "ANTHROPIC_API_KEY",
        }
    models = {
        name: {
            "provider": info.provider,
            "upstream_model": name,
            "kind": "embeddings" if name.startswith("text-embedding") else "chat",
        }
        for name, info in table.items()
        if info.provider in providers
    }
    if not models:
        raise ConfigError(
            ["(no config file): set OPENAI_API_KEY or ANTHROPIC_API_KEY, or pass --config"]
        )
    return parse(
        {
            "store": environ.get("SPENDGATE_STORE", "sqlite:///./spendgate.db"),
            "providers": providers,
            "models": models,
        }
    )


class Secrets(BaseModel):
    """Every secret the config references, read from the environment once."""

    model_config = ConfigDict(frozen=True)
    provider_keys: dict[str, str]
    gateway_keys: tuple[tuple[str, KeyConfig], ...]  # (secret, key)
    admin_key: str | None

    def __repr__(self) -> str:  # never print a secret
        return f"Secrets(providers={sorted(self.provider_keys)}, keys={len(self.gateway_keys)})"

    __str__ = __repr__


def resolve_secrets(config: FileConfig, environ: Mapping[str, str] | None = None) -> Secrets:
    env = os.environ if environ is None else environ
    problems: list[str] = []

    def read(var: str, path: str) -> str:
        value = env.get(var, "")
        if not value:
            problems.append(f"{path}: environment variable {var} is not set")
        return value

    providers = {
        name: read(p.api_key_env, f"providers.{name}.api_key_env")
        for name, p in config.providers.items()
    }
    keys = tuple(
        (read(k.key_env, f"auth.keys.{i}.key_env"), k) for i, k in enumerate(config.auth.keys)
    )
    admin_env = config.auth.admin_key_env
    admin = read(admin_env, "auth.admin_key_env") if admin_env else None
    if problems:
        raise ConfigError(problems)
    return Secrets(provider_keys=providers, gateway_keys=keys, admin_key=admin)


def config_path_from_env() -> str | None:
    return os.environ.get("SPENDGATE_CONFIG") or None


def load(path: str | None) -> tuple[FileConfig, Secrets]:
    """The config from ``path`` (or $SPENDGATE_CONFIG, or the environment) with its secrets."""
    path = path or config_path_from_env()
    config = load_file(path) if path else env_config(os.environ)
    return config, resolve_secrets(config)
