"""Upstream outcomes -> UpstreamError, in one place for every provider."""

from __future__ import annotations

import time
from collections.abc import Mapping

import httpx
import orjson

from accounting.usage import Usage
from policies.errors import UpstreamError
from policies.retry_after import parse_retry_after

MAX_DETAIL = 500  # characters of an upstream's own error text kept in our messages
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504, 529})
CREDENTIAL_STATUS = frozenset({401, 403})


def classify_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    provider: str,
    context_window: bool = False,
    usage: Usage | None = None,
) -> UpstreamError:
    """An upstream non-2xx answer as a typed error."""
    if status in RETRYABLE_STATUS:
        return _transient(status, headers, provider, usage)
    if status in CREDENTIAL_STATUS:
        # The provider key is the gateway's, not the caller's: never pass the upstream's
        # body on (it may echo part of the key) and never blame the caller's key.
        message = (
            f"{provider} rejected the gateway's provider credentials ({status}); "
            "the operator should check the provider's api_key_env"
        )
        return UpstreamError(message, kind="client_error", status=status)
    if 400 <= status < 500:
        return UpstreamError(
            f"{provider} rejected the request ({status})",
            kind="client_error",
            status=status,
            body=body,
            headers=headers,
            context_window=context_window,
            usage=usage,
        )
    server = status >= 500
    return UpstreamError(
        f"{provider} answered an unexpected {status}",
        kind="server_error",
        status=status,
        retryable=server,
        breaker_failure=server,
        usage=usage,
    )


def _transient(
    status: int, headers: Mapping[str, str], provider: str, usage: Usage | None
) -> UpstreamError:
    """429 (the deployment is healthy, only limiting us: not a breaker failure), and
    408, 5xx and 529 (a breaker failure)."""
    retry_after = parse_retry_after(headers, time.time())
    if status == 429:
        return UpstreamError(
            f"{provider} rate-limited the request (429)",
            kind="rate_limited",
            status=status,
            retryable=True,
            retry_after_s=retry_after,
            usage=usage,
        )
    return UpstreamError(
        f"{provider} answered {status}",
        kind="timeout" if status in (408, 504) else "server_error",
        status=status,
        retryable=True,
        breaker_failure=True,
        retry_after_s=retry_after,
        usage=usage,
    )


def classify_transport(exc: httpx.HTTPError | TimeoutError, provider: str) -> UpstreamError:
    """A failure to get an answer at all."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
        return UpstreamError(
            f"cannot connect to {provider} ({type(exc).__name__})",
            kind="connect_error",
            retryable=True,
            breaker_failure=True,
            reached=False,
            retry_here=not isinstance(exc, httpx.ConnectTimeout),
        )
    if isinstance(exc, httpx.PoolTimeout):
        return UpstreamError(
            f"no connection to {provider} was free in time",
            kind="timeout",
            retryable=True,
            reached=False,
        )
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return silent(provider, "did not answer in time")
    return UpstreamError(
        f"{provider} connection failed ({type(exc).__name__})",
        kind="server_error",
        retryable=True,
        breaker_failure=True,
    )


def stream_broken(provider: str, why: str, *, silent: bool = False) -> UpstreamError:
    """The stream failed after it started; retryable only before the commit point (and
    not on the same model when it went silent)."""
    return UpstreamError(
        f"{provider} stream {why}",
        kind="stream_error",
        retryable=True,
        breaker_failure=True,
        retry_here=not silent,
    )


def silent(provider: str, why: str) -> UpstreamError:
    """Silence before the first byte or the first content event: a breaker failure,
    and the next candidate is tried at once (not this model again)."""
    return UpstreamError(
        f"{provider} {why}", kind="timeout", retryable=True, breaker_failure=True, retry_here=False
    )


def json_or_none(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def not_json(provider: str, status: int) -> UpstreamError:
    """A success status whose body is not a JSON object: the deployment is broken."""
    return UpstreamError(
        f"{provider} answered something that is not JSON",
        kind="server_error",
        status=status,
        retryable=True,
        breaker_failure=True,
    )


def openai_error_code(payload: object) -> str | None:
    if isinstance(payload, dict):
        err = payload.get("error")
        if isinstance(err, dict):
            code = err.get("code")
            return code if isinstance(code, str) else None
    return None
