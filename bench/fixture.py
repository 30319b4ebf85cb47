"""The benchmark's fixture: the "full features on" gateway config, the child processes'
environment and the smoke requests every target must answer before it is measured."""

from __future__ import annotations

import json
import os
from pathlib import Path

from procs import http

GATEWAY_KEY = "sg-bench-key-0123456789"
SMOKE_BODY = {
    "model": "gpt-4o",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
}


def write_config(tmp: Path, mock_port: int, store: str) -> Path:
    base = f"http://127.0.0.1:{mock_port}"
    config = {  # JSON is YAML
        "store": store,
        "auth": {
            "admin_key_env": "SG_BENCH_ADMIN",
            "keys": [
                {
                    "name": "bench",
                    "key_env": "SG_BENCH_KEY",
                    "budget_usd": 1_000_000,
                    "budget_period": "30d",
                }
            ],
        },
        "providers": {
            "mock-openai": {
                "kind": "openai",
                "base_url": f"{base}/v1",
                "api_key_env": "SG_BENCH_PROVIDER_KEY",
            },
            "mock-anthropic": {
                "kind": "anthropic",
                "base_url": base,
                "api_key_env": "SG_BENCH_PROVIDER_KEY",
            },
        },
        # The loop guard stays on (every request fingerprinted and counted in the store);
        # its limit is out of reach, as the 32 request variants repeat by design.
        "workflows": {"max_identical_calls": 1_000_000_000},
        "models": {
            "gpt-4o": {
                "provider": "mock-openai",
                "upstream_model": "gpt-4o",
                "fallbacks": ["claude-sonnet"],
            },
            "claude-sonnet": {"provider": "mock-anthropic", "upstream_model": "claude-sonnet-4-5"},
        },
    }
    path = tmp / "config.yaml"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TIKTOKEN_CACHE_DIR", "/work/shared/tiktoken")
    env.update(
        SG_BENCH_KEY=GATEWAY_KEY,
        SG_BENCH_ADMIN="sg-bench-admin-key",
        SG_BENCH_PROVIDER_KEY="sk-mock-provider",
        PYTHONUNBUFFERED="1",
    )
    return env


def smoke(url: str, key: str) -> None:
    """One JSON and one SSE request with the benchmark's headers: fail early and clearly."""
    headers = {
        "content-type": "application/json",
        "authorization": f"Bearer {key}",
        "x-workflow-id": "bench-smoke",
        "x-workflow-budget-usd": "1000000",
        "x-workflow-step": "smoke",
    }
    for stream in (False, True):
        body = json.dumps({**SMOKE_BODY, "stream": stream}).encode()
        status, text = http("POST", f"{url}/v1/chat/completions", body, headers, timeout=30)
        if status != 200 or (stream and b"data: [DONE]" not in text):
            raise RuntimeError(
                f"smoke request to {url} (stream={stream}) got {status}: {text[:500]!r}"
            )
