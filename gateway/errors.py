"""GatewayError: what the client sees, in OpenAI's error shape.

Every foreign error is translated once, here, by ``translate``: the accounting and
policy errors, and the request-parsing errors the routes raise directly.
"""

from __future__ import annotations

import math

import orjson

from accounting.errors import (
    BudgetExceeded,
    GuardrailRefused,
    StoreReset,
    StoreUnavailable,
    WorkflowNotFound,
)
from accounting.pricing import micros_to_usd
from policies.errors import DeadlineExceeded, NoRouteAvailable, RoutingFailed, UpstreamError

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class GatewayError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        should_retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = dict(headers or {})
        if should_retry is not None:
            self.headers["x-should-retry"] = "true" if should_retry else "false"

    def body(self) -> bytes:
        error = {
            "message": self.message,
            "type": ERROR_TYPES.get(self.status, "api_error"),
            "param": self.param,
            "code": self.code,
        }
        return orjson.dumps({"error": error})


def bad_request(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, "invalid_request", message, param=param, should_retry=False)


def _retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def translate(exc: Exception) -> GatewayError:
    """The one place foreign errors become what the client sees."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, BudgetExceeded):
        return _budget(exc)
    if isinstance(exc, GuardrailRefused):
        return _guardrail(exc)
    if isinstance(exc, StoreReset):
        return GatewayError(
            503,
            "store_unavailable",
            "the budget store lost its data (a restart without persistence, or a failover "
            "to an empty replica); budgets fail closed, so nothing was sent upstream, until "
            "an operator accepts the reset (POST /admin/store/accept-reset)",
            headers={"retry-after": "5"},
        )
    if isinstance(exc, StoreUnavailable):
        return GatewayError(
            503,
            "store_unavailable",
            "the budget store is unreachable; budgets fail closed, so nothing was sent "
            "upstream. Try again shortly.",
            headers={"retry-after": "1"},
        )
    if isinstance(exc, WorkflowNotFound):
        return GatewayError(404, "workflow_not_found", str(exc))
    if isinstance(exc, NoRouteAvailable):
        return GatewayError(
            503,
            "no_route_available",
            str(exc),
            headers={"retry-after": _retry_after(exc.retry_after_s)},
        )
    if isinstance(exc, DeadlineExceeded):
        return GatewayError(504, "deadline_exceeded", str(exc), should_retry=False)
    if isinstance(exc, RoutingFailed):
        return _routing_failed(exc)
    if isinstance(exc, UpstreamError):
        return _routing_failed(RoutingFailed([]), exc)
    raise exc


def _budget(exc: BudgetExceeded) -> GatewayError:
    if exc.unit == "usd":
        detail = (
            f"this request may cost up to ${micros_to_usd(exc.needed)} but the {exc.scope}"
            f" budget has ${micros_to_usd(exc.remaining)} left of ${micros_to_usd(exc.limit)}"
        )
    else:
        detail = (
            f"this request may use up to {exc.needed} tokens but the {exc.scope}"
            f" token budget has {exc.remaining} left of {exc.limit}"
        )
    hint = " Lower max_tokens, or raise the cap through the admin API."
    return GatewayError(
        402, "budget_exceeded", detail + "; nothing was sent upstream." + hint, should_retry=False
    )


GUARDRAIL_CODES = {
    "cancelled": "workflow_cancelled",
    "expired": "workflow_expired",
    "call_limit": "workflow_call_limit",
    "loop": "loop_detected",
}


def _guardrail(exc: GuardrailRefused) -> GatewayError:
    """A 403 that says which limit, its value, and what to do about it."""
    if exc.reason == "expired":
        message = (
            f"the workflow's X-Workflow-Timeout-S of {exc.limit:g} s has passed "
            f"({exc.value:.0f} s since its first request)"
        )
        hint = "start a new workflow id, or give the first request a longer timeout"
    elif exc.reason == "call_limit":
        message = (
            f"the workflow reached its X-Workflow-Max-Calls of {exc.limit} ({exc.value} calls)"
        )
        hint = "start a new workflow id, or give the first request a higher call cap"
    elif exc.reason == "loop":
        message = (
            f"the same request was sent {exc.value} times in this workflow; the loop guard "
            f"allows {exc.limit} (workflows.max_identical_calls)"
        )
        hint = "change the request, or send an Idempotency-Key to replay an earlier answer"
    else:
        message = f"the workflow was stopped ({exc.detail or 'cancelled'})"
        hint = "its requests are refused from now on: start a new workflow id"
    return GatewayError(
        403,
        GUARDRAIL_CODES.get(exc.reason, "workflow_cancelled"),
        f"{message}; nothing was sent upstream. To go on: {hint}.",
        should_retry=False,
    )


def _routing_failed(exc: RoutingFailed, last: UpstreamError | None = None) -> GatewayError:
    last = last or (exc.last if exc.failures else None)
    summary = str(exc) or (last.message if last is not None else "no candidate could be tried")
    if last is not None and last.kind == "provider_busy":
        return GatewayError(
            503,
            "provider_busy",
            f"every candidate's provider stayed at its concurrency limit ({summary})",
            headers={"retry-after": _retry_after(last.retry_after_s or 1.0)},
            should_retry=True,
        )
    if last is not None and last.kind == "rate_limited":
        headers = {}
        if last.retry_after_s is not None:
            headers["retry-after"] = _retry_after(last.retry_after_s)
        return GatewayError(
            429,
            "rate_limited",
            f"upstream rate limit outlasted retries and fallbacks ({summary})",
            headers=headers,
            should_retry=False,
        )
    return GatewayError(
        502,
        "upstream_error",
        f"upstream failed after retries and fallbacks ({summary})",
        should_retry=False,
    )
