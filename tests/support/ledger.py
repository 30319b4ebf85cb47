"""The truth tests judge money by: what the mock provider really generated (its
stats), priced at one flat rate, next to what the gateway recorded."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx

from tests.support.gateway import KEY_RESEARCH

PRICE = {"input_per_mtok": 1000, "output_per_mtok": 1000}  # $0.001 per token
# budgets.cut_stream_allowance_tokens (the default): what a stream the gateway cut may
# have cost beyond what arrived (the provider generates until it notices the stop).
CUT_ALLOWANCE_TOKENS = 16
TOKEN_USD = Decimal("0.001")
CUT_ALLOWANCE_USD = CUT_ALLOWANCE_TOKENS * TOKEN_USD
FAST_RETRY = {"max_attempts": 3, "initial_backoff_s": 0.01, "max_backoff_s": 0.05}


def flat_priced(config: dict[str, Any]) -> dict[str, Any]:
    """Every chat model at $0.001 a token, quick retries, and no allow-list."""
    for model in config["models"].values():
        if model.get("kind", "chat") == "chat":
            model["price"] = PRICE
            model.setdefault("retry", FAST_RETRY)
    config["auth"]["keys"][1]["models"] = None
    return config


def records(mock_url: str, model: str | None = None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(f"{mock_url}/_mock/stats", timeout=10).json()[
        "requests"
    ]
    return [r for r in found if model is None or r["model"] == model]


def truth_usd(mock_url: str, model: str | None = None) -> Decimal:
    """What the provider billed: every prompt and every generated token."""
    tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in records(mock_url, model))
    return tokens * TOKEN_USD


def status(url: str, workflow_id: str, key: str = KEY_RESEARCH) -> dict[str, Any]:
    r = httpx.get(
        f"{url}/workflows/{workflow_id}", headers={"authorization": f"Bearer {key}"}, timeout=10
    )
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def settled(url: str, workflow_id: str, calls: int, timeout: float = 10.0) -> dict[str, Any]:
    """Poll until the workflow shows ``calls`` calls and nothing held: for ends the
    client cannot wait for (it went away, or an abandoned answer drains)."""
    deadline = time.monotonic() + timeout
    while True:
        body = status(url, workflow_id)
        if body["calls"] >= calls and body["reserved_usd"] == "0.000000":
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"workflow {workflow_id} not settled: {body}")
        time.sleep(0.05)


def spent(body: dict[str, Any]) -> Decimal:
    return Decimal(body["spent_usd"])
