"""The one error renderer (each client API's shape) and the translator registry."""

from __future__ import annotations

import orjson
import pytest

from gateway import sse
from gateway.errors import GatewayError
from gateway.translate import registry
from gateway.translate.errors import render, stream_event

BUDGET = GatewayError(402, "budget_exceeded", "over budget", should_retry=False)


def test_openai_shape_for_chat_and_responses() -> None:
    for api in ("chat", "responses", "embeddings"):
        assert orjson.loads(render(api, BUDGET)) == {
            "error": {
                "message": "over budget",
                "type": "insufficient_quota",
                "param": None,
                "code": "budget_exceeded",
            }
        }


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
    ],
)
def test_anthropic_shape_for_messages(status: int, kind: str) -> None:
    body = orjson.loads(render("messages", GatewayError(status, "some_code", "why")))
    assert body == {"type": "error", "error": {"type": kind, "message": "why", "code": "some_code"}}


def test_stream_error_events() -> None:
    chat = stream_event("chat", BUDGET)
    assert chat.startswith(b"data: {") and b"event:" not in chat
    [event] = sse.Decoder().feed(stream_event("responses", BUDGET))
    data = orjson.loads(event.data)
    assert event.event == "error" and data["type"] == "error" and data["code"] == "budget_exceeded"
    assert data["error"]["message"] == "over budget"  # what makes the OpenAI SDK raise
    [event] = sse.Decoder().feed(stream_event("messages", BUDGET))
    assert event.event == "error" and orjson.loads(event.data)["error"]["type"] == "billing_error"


def test_the_registry_picks_a_translator_per_pair() -> None:
    assert registry.adapter("chat", "anthropic") is registry.NATIVE
    assert registry.adapter("responses", "openai") is registry.NATIVE
    assert registry.adapter("messages", "anthropic") is registry.NATIVE
    on_messages = registry.adapter("responses", "anthropic")
    via_chat = registry.adapter("messages", "openai")
    assert isinstance(on_messages, registry.Pivot) and on_messages.endpoint == "messages"
    assert isinstance(via_chat, registry.Pivot) and via_chat.endpoint == "chat"


def test_stateful_requests_are_pinned_to_their_provider() -> None:
    body = {"input": "x", "previous_response_id": "resp_1"}
    assert registry.pinned("responses", body, "openai", "openai") is None
    why = registry.pinned("responses", body, "azure", "openai")
    assert why is not None and "pinned" in why and "previous_response_id" in why
    assert registry.pinned("responses", {"input": "x"}, "azure", "openai") is None
