"""Provider-shaped error bodies: OpenAI's ``{"error": {...}}`` and Anthropic's
``{"type": "error", "error": {...}}``."""

from __future__ import annotations

from typing import Any

OPENAI_CONTEXT_WINDOW = 128_000
ANTHROPIC_CONTEXT_WINDOW = 200_000

# status -> (type, code, message)
_OPENAI: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    408: ("timeout", None, "Request timed out."),
    409: ("invalid_request_error", "conflict", "Conflict."),
    413: ("invalid_request_error", "request_too_large", "Request too large."),
    422: ("invalid_request_error", None, "Unprocessable request."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", "service_unavailable", "The engine is currently overloaded."),
    504: ("server_error", None, "Gateway timeout."),
    529: ("server_error", "overloaded", "The server is overloaded."),
}

# status -> (type, message)
_ANTHROPIC: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    408: ("timeout_error", "Request timed out."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error."),
    502: ("api_error", "Bad gateway."),
    503: ("api_error", "Service unavailable."),
    504: ("timeout_error", "Gateway timeout."),
    529: ("overloaded_error", "Overloaded"),
}


def openai_error(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def anthropic_error(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


def openai_default_error(
    status: int, prompt_tokens: int, *, context_window: bool, content_policy: bool
) -> dict[str, Any]:
    """A plausible OpenAI error body for ``status``."""
    if status == 400 and context_window:
        message = (
            f"This model's maximum context length is {OPENAI_CONTEXT_WINDOW} tokens. "
            f"However, your messages resulted in {OPENAI_CONTEXT_WINDOW + prompt_tokens} "
            "tokens. Please reduce the length of the messages."
        )
        return openai_error(message, "invalid_request_error", "context_length_exceeded", "messages")
    if status == 400 and content_policy:
        message = (
            "Your request was rejected as a result of our safety system. "
            "Your prompt may contain text that is not allowed by our safety system."
        )
        return openai_error(message, "invalid_request_error", "content_policy_violation", "prompt")
    fallback = (
        ("server_error", None, "Error.")
        if status >= 500
        else ("invalid_request_error", None, "Error.")
    )
    type_, code, message = _OPENAI.get(status, fallback)
    return openai_error(message, type_, code)


def anthropic_default_error(
    status: int, prompt_tokens: int, *, context_window: bool
) -> dict[str, Any]:
    """A plausible Anthropic error body for ``status``."""
    if status == 400 and context_window:
        total = ANTHROPIC_CONTEXT_WINDOW + prompt_tokens
        message = f"prompt is too long: {total} tokens > {ANTHROPIC_CONTEXT_WINDOW} maximum"
        return anthropic_error("invalid_request_error", message)
    fallback = ("api_error", "Error.") if status >= 500 else ("invalid_request_error", "Error.")
    type_, message = _ANTHROPIC.get(status, fallback)
    return anthropic_error(type_, message)
