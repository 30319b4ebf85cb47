"""Errors in the client's API shape: the one renderer of a ``GatewayError`` (pure).

Chat Completions, Embeddings and Responses clients get OpenAI's body
``{"error": {"message", "type", "param", "code"}}``; Messages clients get Anthropic's
``{"type": "error", "error": {"type", "message"}}`` (plus the gateway's ``code``), with
the same status either way. In a stream that already started, the error is an event in
the same shape: chat ``data: {"error": ...}``, Responses ``event: error`` (which the
OpenAI SDK raises), Messages ``event: error`` (which the Anthropic SDK raises).
"""

from __future__ import annotations

from typing import Protocol

import orjson

ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class Rendered(Protocol):
    status: int
    code: str
    message: str
    param: str | None

    def body(self) -> bytes: ...


def anthropic_body(status: int, message: str, code: str | None) -> dict[str, object]:
    error: dict[str, object] = {
        "type": ANTHROPIC_TYPES.get(status, "api_error"),
        "message": message,
    }
    if code is not None:
        error["code"] = code
    return {"type": "error", "error": error}


def render(api: str, error: Rendered) -> bytes:
    """The error's body for a client of ``api``."""
    if api == "messages":
        return orjson.dumps(anthropic_body(error.status, error.message, error.code))
    return error.body()


def stream_event(api: str, error: Rendered) -> bytes:
    """The error as the last event of a stream already under way."""
    if api == "messages":
        return b"event: error\ndata: " + render(api, error) + b"\n\n"
    if api == "responses":
        payload = orjson.loads(error.body())
        event = {
            "type": "error",
            "code": error.code,
            "message": error.message,
            "param": error.param,
            **payload,
        }
        return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"
    return b"data: " + error.body() + b"\n\n"


def upstream_body_for(api: str, status: int, message: str, param: str | None) -> bytes:
    """The body of a request the gateway could not translate for a provider."""
    if api == "messages":
        return orjson.dumps(anthropic_body(status, message, "invalid_request"))
    error = {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": "invalid_request",
    }
    return orjson.dumps({"error": error})
