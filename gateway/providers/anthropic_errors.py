"""Anthropic error bodies: read them, classify them, put them in OpenAI's shape (pure)."""

from __future__ import annotations

import json
from typing import Any

JSON = dict[str, Any]

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_CONTEXT_MARKERS = (
    "prompt is too long",
    "exceed context limit",
    "exceeds context limit",
    "context window",
    "context length",
)
_POLICY_MARKERS = ("content filtering policy", "content policy", "usage policy", "output blocked")
_MAX_ERROR_MESSAGE = 1000


def error_to_openai(status: int, body: object) -> JSON:
    """Anthropic error body (dict, JSON text/bytes or anything) -> OpenAI error body."""
    kind, message = _error_fields(status, body)
    code: str | None = None
    if _is_context_message(status, message):
        code = "context_length_exceeded"
    elif _is_policy_message(status, message):
        code = "content_policy_violation"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def is_context_window_error(status: int, body: object) -> bool:
    """True when Anthropic rejected the request because the prompt is too long."""
    return _is_context_message(status, _error_fields(status, body)[1])


def is_content_policy_error(status: int, body: object) -> bool:
    """True when Anthropic blocked the request or output by content policy."""
    return _is_policy_message(status, _error_fields(status, body)[1])


def _is_context_message(status: int, message: str) -> bool:
    lowered = message.lower()
    return status < 500 and any(marker in lowered for marker in _CONTEXT_MARKERS)


def _is_policy_message(status: int, message: str) -> bool:
    lowered = message.lower()
    return status < 500 and any(marker in lowered for marker in _POLICY_MARKERS)


def _error_fields(status: int, body: object) -> tuple[str, str]:
    parsed = _maybe_json(body)
    err = parsed.get("error") if isinstance(parsed, dict) else None
    kind = err.get("type") if isinstance(err, dict) else None
    message = err.get("message") if isinstance(err, dict) else err
    if not isinstance(message, str) or not message.strip():
        text = parsed if isinstance(parsed, str) else ""
        message = text.strip() or f"upstream returned HTTP {status}"
    if not isinstance(kind, str) or not kind:
        fallback = "api_error" if status >= 500 else "invalid_request_error"
        kind = _STATUS_TYPES.get(status, fallback)
    return kind, message[:_MAX_ERROR_MESSAGE]


def _maybe_json(body: object) -> object:
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8", errors="replace")
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
        except ValueError:
            return body
        return parsed if isinstance(parsed, dict) else body
    return body
