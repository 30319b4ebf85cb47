"""Every error row of the contract: the bad input, the status, the OpenAI error body."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.gateway import KEY_OTHER, Gateway

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def test_malformed_json_is_400(gateway: Gateway) -> None:
    with gateway.client() as c:
        r = c.post(
            "/v1/chat/completions",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_request"
    assert "not valid JSON" in error_of(r)["message"]
    assert gateway.mock_stats()["requests"] == []


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ({"x-workflow-id": "wf-1", "x-workflow-budget-usd": "-1"}, "X-Workflow-Budget-Usd"),
        ({"x-workflow-id": "wf-1", "x-workflow-budget-usd": "lots"}, "X-Workflow-Budget-Usd"),
        ({"x-workflow-id": "wf-1", "x-workflow-budget-tokens": "1.5"}, "Tokens"),
        ({"x-workflow-budget-usd": "5"}, "need an X-Workflow-Id"),
        ({"x-request-timeout": "soon"}, "X-Request-Timeout"),
        ({"x-request-timeout": "-3"}, "X-Request-Timeout"),
        ({"x-workflow-id": "has space"}, "x-workflow-id"),
    ],
)
def test_bad_header_values_are_400(gateway: Gateway, headers: dict[str, str], needle: str) -> None:
    with gateway.client() as c:
        r = c.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert r.status_code == 400
    assert needle in error_of(r)["message"]
    assert gateway.mock_stats()["requests"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "x"}]},
        {"model": "gpt-4o"},
        {"model": "gpt-4o", "messages": [], "stream": False},
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "stream": "yes"},
        ["not", "an", "object"],
    ],
)
def test_bad_bodies_are_400(gateway: Gateway, body: Any) -> None:
    with gateway.client() as c:
        r = c.post("/v1/chat/completions", json=body)
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_request"


@pytest.mark.parametrize("auth", [None, "Bearer wrong-key", "Basic abc", "Bearer"])
def test_missing_or_unknown_key_is_401(gateway: Gateway, auth: str | None) -> None:
    headers = {"authorization": auth} if auth else {}
    r = httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=headers)
    assert r.status_code == 401 and error_of(r)["code"] == "invalid_api_key"
    assert gateway.mock_stats()["requests"] == []


def test_model_outside_allow_list_is_403(gateway: Gateway) -> None:
    with gateway.client(KEY_OTHER) as c:
        r = c.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 403 and error_of(r)["code"] == "model_not_allowed"


def test_unknown_model_is_404(gateway: Gateway) -> None:
    with gateway.client() as c:
        r = c.post("/v1/chat/completions", json={**CHAT, "model": "gpt-99"})
    assert r.status_code == 404 and error_of(r)["code"] == "model_not_found"
    assert error_of(r)["param"] == "model"


def test_body_over_limit_is_413(gateway: Gateway) -> None:
    limit = gateway.runtime.rules.defaults.max_body_bytes
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * (limit + 10)}]}
    with gateway.client() as c:
        r = c.post("/v1/chat/completions", json=big)
    assert r.status_code == 413 and error_of(r)["code"] == "request_too_large"


def test_body_over_limit_without_content_length_is_413(gateway: Gateway) -> None:
    limit = gateway.runtime.rules.defaults.max_body_bytes

    def chunks() -> Any:
        yield b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}]}'

    with gateway.client() as c:
        r = c.post("/v1/chat/completions", content=chunks())
    assert r.status_code == 413


def test_upstream_client_error_passes_through_unchanged(gateway: Gateway) -> None:
    body = {
        "error": {
            "message": "Invalid value for 'temperature'",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": None,
        }
    }
    gateway.script("gpt-4o", [{"status": 400, "body": body}])
    with gateway.client() as c:
        r = c.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 400 and r.json() == body
    assert r.headers["x-spendgate-attempts"] == "1"
    assert len(gateway.mock_stats()["requests"]) == 1


def test_upstream_credential_rejection_never_echoes_the_provider_body(gateway: Gateway) -> None:
    body = {
        "error": {
            "message": "Incorrect API key provided: sk-prov***9c",
            "code": "invalid_api_key",
            "type": "invalid_request_error",
            "param": None,
        }
    }
    gateway.script("gpt-4o-mini", [{"status": 401, "body": body}])
    with gateway.client() as c:
        r = c.post("/v1/chat/completions", json={**CHAT, "model": "gpt-4o-mini"})
    assert r.status_code == 502 and error_of(r)["code"] == "upstream_error"
    assert "sk-prov" not in r.text and "provider credentials" in r.text
