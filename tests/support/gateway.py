"""A real gateway (uvicorn on loopback) in front of a real mock provider, for tests."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.app import create_app
from gateway.config import parse, resolve_secrets
from gateway.runtime import Runtime
from tests.support.servers import serve_app

PROVIDER_KEY = "sk-provider-SENTINEL-7f3a9c"
KEY_RESEARCH = "sg-research-SENTINEL-1b2c"
KEY_OTHER = "sg-other-SENTINEL-9d8e"
ADMIN_KEY = "sg-admin-SENTINEL-4455"
ENV = {
    "MOCK_PROVIDER_KEY": PROVIDER_KEY,
    "SG_KEY_RESEARCH": KEY_RESEARCH,
    "SG_KEY_OTHER": KEY_OTHER,
    "SG_ADMIN": ADMIN_KEY,
}


def base_config(mock_url: str, store: str) -> dict[str, Any]:
    return {
        "store": store,
        "auth": {
            "admin_key_env": "SG_ADMIN",
            "keys": [
                {"name": "research", "key_env": "SG_KEY_RESEARCH"},
                {"name": "other", "key_env": "SG_KEY_OTHER", "models": ["gpt-4o-mini"]},
            ],
        },
        "providers": {
            "mock-openai": {
                "kind": "openai",
                "base_url": f"{mock_url}/v1",
                "api_key_env": "MOCK_PROVIDER_KEY",
                "idle_timeout_s": 5,
                "first_token_timeout_s": 5,
            },
            "mock-anthropic": {
                "kind": "anthropic",
                "base_url": mock_url,
                "api_key_env": "MOCK_PROVIDER_KEY",
                "idle_timeout_s": 5,
                "first_token_timeout_s": 5,
            },
        },
        "models": {
            "gpt-4o": {
                "provider": "mock-openai",
                "upstream_model": "gpt-4o",
                "fallbacks": ["claude-sonnet"],
                "retry": {"max_attempts": 3, "initial_backoff_s": 0.01, "max_backoff_s": 0.05},
            },
            "gpt-4o-mini": {"provider": "mock-openai", "upstream_model": "gpt-4o-mini"},
            "claude-sonnet": {"provider": "mock-anthropic", "upstream_model": "claude-sonnet-4-5"},
            "embed": {
                "provider": "mock-openai",
                "upstream_model": "text-embedding-3-small",
                "kind": "embeddings",
            },
        },
        "defaults": {"request_timeout_s": 30},
    }


@dataclass
class Gateway:
    url: str
    runtime: Runtime
    mock_url: str

    def client(self, key: str = KEY_RESEARCH, **kw: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {key}"}, timeout=30, **kw
        )

    def mock_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.mock_url}/_mock/stats", timeout=10).json()
        return stats

    def script(
        self, model: str, steps: list[dict[str, Any]], default: dict[str, Any] | None = None
    ) -> None:
        body: dict[str, Any] = {"model": model, "steps": steps}
        if default is not None:
            body["default"] = default
        httpx.post(f"{self.mock_url}/_mock/script", json=body, timeout=10).raise_for_status()


@contextmanager
def run_gateway(config: dict[str, Any], mock_url: str, **app_kw: Any) -> Iterator[Gateway]:
    parsed = parse(copy.deepcopy(config))
    secrets = resolve_secrets(parsed, ENV)
    app = create_app(parsed, secrets, **app_kw)
    server = {"http": "gateway.server:GuardedHttpTools"}  # as `spendgate serve` runs it
    with serve_app(app, **server) as url:
        yield Gateway(url, app.state.runtime, mock_url)
