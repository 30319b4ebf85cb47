"""The YAML config, parsed once at start into frozen types (``config_schema``).

Unknown keys, wrong types, dangling references and missing secrets are refused at
boot with a message naming the key path (``models.gpt-4o.retry.max_attempts: ...``).
This module (with ``config_proxy``) is the only place that reads the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from accounting.prices_db import (
    PriceNotFound,
    db_context_window,
    db_price,
    guess_provider,
    known_model,
    known_models,
)
from accounting.pricing import Price, PriceTier
from gateway.config_proxy import UpstreamRoute, header_safe, upstream_routes
from gateway.config_schema import (
    AuthConfig,
    BreakerConfig,
    BudgetsConfig,
    ConfigError,
    DefaultsConfig,
    FileConfig,
    IdempotencyConfig,
    KeyConfig,
    ModelConfig,
    PriceConfig,
    PriceTierConfig,
    ProviderConfig,
    RetryConfig,
    ServerConfig,
    WorkflowsConfig,
    period_seconds,
)

__all__ = [
    "AuthConfig",
    "BreakerConfig",
    "BudgetsConfig",
    "ConfigError",
    "DefaultsConfig",
    "FileConfig",
    "IdempotencyConfig",
    "KeyConfig",
    "ModelConfig",
    "PriceConfig",
    "ProviderConfig",
    "RetryConfig",
    "Secrets",
    "ServerConfig",
    "UpstreamRoute",
    "WorkflowsConfig",
    "context_window_of",
    "header_safe",
    "load",
    "max_output_of",
    "parse",
    "period_seconds",
    "price_of",
    "resolve_secrets",
    "upstream_routes",
]


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


# Model and provider names travel in response headers and metric labels: printable
# ASCII without spaces, quotes or separators that a header or a label would mangle.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")


def _check_names(config: FileConfig) -> list[str]:
    problems = []
    for section, names in (("models", config.models), ("providers", config.providers)):
        for name in names:
            if not _NAME.match(name):
                problems.append(
                    f"{section}.{name!r}: a name must be 1-128 characters of A-Z a-z 0-9 "
                    "and . _ : / @ + - (starting with a letter or digit)"
                )
    return problems


def _check_references(config: FileConfig) -> list[str]:
    problems: list[str] = _check_names(config)
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
        provider = config.providers.get(model.provider)
        if model.price is None and provider is not None:
            problems.extend(_check_price(path, model, provider.kind))
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


def _check_price(path: str, model: ModelConfig, provider_kind: str) -> list[str]:
    try:
        db_price(model.upstream_model, provider_kind)
    except PriceNotFound as exc:
        return [f"{path}.price: required ({exc}): set {path}.price"]
    return []


def _band(p: PriceConfig | PriceTierConfig) -> dict[str, Any]:
    return {
        "input_per_mtok": p.input_per_mtok,
        "output_per_mtok": p.output_per_mtok,
        "cached_input_per_mtok": p.cached_input_per_mtok,
        "cache_write_per_mtok": p.cache_write_per_mtok,
        "cache_write_1h_per_mtok": p.cache_write_1h_per_mtok,
    }


def price_of(
    model: ModelConfig, provider_kind: str | None = None, *, at: datetime | None = None
) -> Price:
    """The model's price, decided once at start: its config ``price`` (source "config"),
    else genai-prices' for its upstream model at ``provider_kind`` (default: guessed
    from the name) as of ``at`` (default now). Raises ``PriceNotFound`` when neither
    has one (``parse`` refuses such a config first)."""
    p = model.price
    if p is None:
        return db_price(
            model.upstream_model, provider_kind or guess_provider(model.upstream_model), at
        )
    tiers = tuple(PriceTier(t.above_input_tokens, **_band(t)) for t in p.tiers)
    return Price(**_band(p), tiers=tiers, source="config")


def max_output_of(model: ModelConfig, defaults: DefaultsConfig) -> int:
    """The config's ``max_output_tokens``, else the bundled table's (a dated name finds
    its undated entry), else ``defaults.max_output_tokens``."""
    if model.max_output_tokens is not None:
        return model.max_output_tokens
    info = known_model(model.upstream_model)
    return info.max_output_tokens if info is not None else defaults.max_output_tokens


def context_window_of(model: ModelConfig, provider_kind: str | None = None) -> int | None:
    """The model's context window in tokens: the config's ``context_window``, else
    genai-prices', else the bundled table's, else None (unknown). ``provider_kind``
    defaults to a guess from the name."""
    if model.context_window is not None:
        return model.context_window
    name = model.upstream_model
    window = db_context_window(name, provider_kind or guess_provider(name))
    if window is None and (info := known_model(name)) is not None:
        window = info.context_window
    return window


def env_config(environ: Mapping[str, str]) -> FileConfig:
    """The config used with no file: every provider whose key is in the environment."""
    table = known_models()
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
    metrics_key: str | None = None

    def every_secret(self) -> list[str]:
        """Every secret value, for scrubbing what upstreams echo back."""
        found = [*self.provider_keys.values(), *(secret for secret, _ in self.gateway_keys)]
        return found + [s for s in (self.admin_key, self.metrics_key) if s]

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
    for name, p in config.providers.items():
        if not header_safe(providers[name]):
            problems.append(
                f"providers.{name}.api_key_env: environment variable {p.api_key_env} holds "
                "a CR, LF or NUL (a trailing newline?), which cannot go in a header"
            )
    keys = tuple(
        (read(k.key_env, f"auth.keys.{i}.key_env"), k) for i, k in enumerate(config.auth.keys)
    )
    admin_env = config.auth.admin_key_env
    admin = read(admin_env, "auth.admin_key_env") if admin_env else None
    metrics_env = config.auth.metrics_key_env
    metrics = read(metrics_env, "auth.metrics_key_env") if metrics_env else None
    if problems:
        raise ConfigError(problems)
    return Secrets(provider_keys=providers, gateway_keys=keys, admin_key=admin, metrics_key=metrics)


LOG_LEVEL_ENV = "SPENDGATE_LOG_LEVEL"


def log_level_from_env() -> str:
    """The log level ``spendgate serve --log-level`` handed to its worker processes."""
    return os.environ.get(LOG_LEVEL_ENV, "INFO")


def config_path_from_env() -> str | None:
    return os.environ.get("SPENDGATE_CONFIG") or None


def load(path: str | None) -> tuple[FileConfig, Secrets]:
    """The config from ``path`` (or $SPENDGATE_CONFIG, or the environment) with its secrets."""
    path = path or config_path_from_env()
    config = load_file(path) if path else env_config(os.environ)
    return config, resolve_secrets(config)
