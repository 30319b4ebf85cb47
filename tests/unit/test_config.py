from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import main
from gateway.config import ConfigError, env_config, load_file, parse, resolve_secrets

GOOD: dict[str, Any] = {
    "store": "sqlite:///tmp/x.db",
    "auth": {
        "admin_key_env": "ADMIN",
        "keys": [
            {
                "name": "research",
                "key_env": "KEY_R",
                "models": ["gpt-4o"],
                "max_workflow_budget_usd": 5.0,
                "budget_usd": 200,
                "budget_period": "30d",
            }
        ],
    },
    "providers": {
        "openai": {
            "kind": "openai",
            "base_url": "https://api.openai.com/v1",
            "api_key_env": "OPENAI_API_KEY",
        }
    },
    "models": {
        "gpt-4o": {
            "provider": "openai",
            "upstream_model": "gpt-4o",
            "price": {"input_per_mtok": 2.5, "output_per_mtok": 10},
            "fallbacks": ["mini"],
            "retry": {
                "max_attempts": 4,
                "initial_backoff_s": 1,
                "max_backoff_s": 30,
                "max_retry_after_s": 60,
            },
            "breaker": {"fail_max": 5, "reset_timeout_s": 60},
        },
        "mini": {"provider": "openai", "upstream_model": "gpt-4o-mini"},
    },
    "defaults": {"request_timeout_s": 600},
}
ENV = {"ADMIN": "a", "KEY_R": "r", "OPENAI_API_KEY": "sk-x"}


def problems(raw: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        resolve_secrets(parse(raw), ENV if env is None else env)
    return info.value.problems


def mutated(path: list[str], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(GOOD)
    node = raw
    for part in path[:-1]:
        node = node[part]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return raw


def test_contract_shaped_config_parses() -> None:
    config = parse(copy.deepcopy(GOOD))
    secrets = resolve_secrets(config, ENV)
    assert config.models["gpt-4o"].fallbacks == ("mini",)
    assert secrets.provider_keys == {"openai": "sk-x"}
    assert "sk-x" not in repr(secrets) and "sk-x" not in str(secrets)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["models", "gpt-4o", "retry", "max_attemps"], 3, "models.gpt-4o.retry.max_attemps"),
        (["models", "gpt-4o", "retry", "max_attempts"], "many", "models.gpt-4o.retry.max_attempts"),
        (["models", "gpt-4o", "provider"], "azure", "models.gpt-4o.provider: no provider"),
        (["models", "gpt-4o", "fallbacks"], ["nope"], "models.gpt-4o.fallbacks: no model"),
        (["models", "gpt-4o", "fallbacks"], ["gpt-4o"], "itself"),
        (["providers", "openai", "api_key"], "sk-inline", "providers.openai.api_key"),
        (["providers", "openai", "kind"], "cohere", "providers.openai.kind"),
        (["auth", "keys", 0, "budget_period"], "monthly", "auth.keys.0.budget_period"),
        (["auth", "keys", 0, "models"], ["gpt-5"], "auth.keys.0.models"),
        (["models", "mini", "upstream_model"], "my-finetune", "models.mini.price: required"),
        (["storage"], "x", "storage"),
    ],
)
def test_bad_configs_name_the_key_path(path: list[Any], value: Any, expected: str) -> None:
    found = problems(mutated(path, value))
    assert any(expected in p for p in found), found


def test_missing_secret_names_the_key_and_variable() -> None:
    found = problems(copy.deepcopy(GOOD), {"ADMIN": "a", "KEY_R": "r"})
    assert found == ["providers.openai.api_key_env: environment variable OPENAI_API_KEY is not set"]


def test_env_config_serves_providers_with_keys() -> None:
    config = env_config({"OPENAI_API_KEY": "sk"})
    assert set(config.providers) == {"openai"}
    assert "gpt-4o" in config.models and "claude-sonnet-4-5" not in config.models
    with pytest.raises(ConfigError):
        env_config({})


def test_check_config_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    assert main(["check-config", str(good)]) == 0
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mutated(["models", "gpt-4o", "retry", "max_attemps"], 3)))
    assert main(["check-config", str(bad)]) == 1
    assert "models.gpt-4o.retry.max_attemps" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [unclosed")
    assert main(["check-config", str(broken)]) == 1
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 1


def test_load_file_rejects_non_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_file(path)


@pytest.mark.parametrize("name", ["clàude", 'a"b\nc', "sp ace", "x" * 200])
def test_model_names_that_would_break_a_header_are_refused(name: str) -> None:
    """A configured model name travels in X-Spendgate-Model: non-ASCII answered 500,
    a quote and a newline dropped the connection."""
    raw = copy.deepcopy(GOOD)
    raw["models"][name] = raw["models"].pop("mini")
    raw["models"]["gpt-4o"]["fallbacks"] = [name]
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    assert any("a name must be" in problem for problem in caught.value.problems)


def test_budget_ceilings_are_bounded() -> None:
    raw = copy.deepcopy(GOOD)
    raw["auth"]["keys"][0]["max_workflow_budget_usd"] = 10**12
    with pytest.raises(ConfigError, match="max_workflow_budget_usd"):
        parse(raw)
