"""Parse and check what the client sent: body, model, headers. Bad input -> 400-class
GatewayError with a message naming the offending field or header."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from starlette.requests import Request

from accounting.budgets import Scope
from accounting.pricing import micros_to_usd, usd_to_micros
from gateway.auth import Principal
from gateway.context import Ctx
from gateway.errors import GatewayError, bad_request
from gateway.providers.base import Endpoint
from gateway.runtime import Runtime
from policies.deadline import Deadline, timeout_seconds

_ID = re.compile(r"^[\x21-\x7e]{1,200}$")


async def read_json(request: Request, limit: int) -> tuple[dict[str, Any], int]:
    """The body parsed (once), and its size in bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the request body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body, size


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        "request_too_large",
        f"the request body is larger than the gateway's limit of {limit} bytes",
        should_retry=False,
    )


def check_model(rt: Runtime, principal: Principal, body: dict[str, Any], endpoint: Endpoint) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' is required and must be a string", "model")
    runtime = rt.models.get(model)
    if runtime is None:
        raise GatewayError(
            404,
            "model_not_found",
            f"no model named {model!r} is configured; GET /v1/models lists "
            "the models this key may use",
            param="model",
            should_retry=False,
        )
    if not principal.may_use(model):
        raise GatewayError(
            403,
            "model_not_allowed",
            f"the key {principal.name!r} may not use the model {model!r}",
            param="model",
            should_retry=False,
        )
    if runtime.kind != endpoint:
        raise bad_request(f"the model {model!r} is a {runtime.kind} model, not {endpoint}", "model")
    if endpoint == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad_request("'messages' must be a non-empty list", "messages")
    if not isinstance(body.get("stream", False), bool):
        raise bad_request("'stream' must be true or false", "stream")
    return model


def _header_id(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    if value is None:
        return None
    if not _ID.match(value):
        raise bad_request(f"{name} must be 1-200 printable ASCII characters without spaces")
    return value


def workflow_scope(request: Request, principal: Principal) -> Scope:
    headers = request.headers
    workflow = _header_id(request, "x-workflow-id")
    cap_text = headers.get("x-workflow-budget-usd")
    tokens_text = headers.get("x-workflow-budget-tokens")
    step = headers.get("x-workflow-step")
    if workflow is None and (cap_text or tokens_text):
        raise bad_request(
            "X-Workflow-Budget-Usd and X-Workflow-Budget-Tokens need an X-Workflow-Id"
        )
    cap = _usd_header(cap_text) if cap_text is not None else None
    ceiling = principal.max_workflow_budget_micros
    if ceiling is not None and workflow is not None:
        if cap is not None and cap > ceiling:
            raise bad_request(
                f"X-Workflow-Budget-Usd {micros_to_usd(cap)} is above this key's ceiling of "
                f"{micros_to_usd(ceiling)}"
            )
        cap = ceiling if cap is None else cap
    if step is not None and len(step) > 256:
        raise bad_request("X-Workflow-Step must be at most 256 characters")
    return Scope(
        key=principal.name,
        workflow_id=workflow,
        cap_micros=cap,
        cap_tokens=_tokens_header(tokens_text),
        step=step,
        key_budget=principal.key_budget,
    )


def _usd_header(text: str) -> int:
    try:
        return usd_to_micros(text)
    except ValueError as exc:
        raise bad_request(f"X-Workflow-Budget-Usd: {exc}") from None


def _tokens_header(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.strip().isdigit():
        raise bad_request(f"X-Workflow-Budget-Tokens must be a whole number, got {text!r}")
    return int(text)


def build_ctx(
    rt: Runtime,
    request: Request,
    principal: Principal,
    body: dict[str, Any],
    endpoint: Endpoint,
    request_id: str,
) -> Ctx:
    model = check_model(rt, principal, body, endpoint)
    defaults = rt.config.defaults
    try:
        seconds = timeout_seconds(
            request.headers.get("x-request-timeout"),
            request.headers.get("x-stainless-timeout"),
            defaults.request_timeout_s,
            defaults.max_request_timeout_s,
        )
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    retry_count = request.headers.get("x-stainless-retry-count", "0")
    upstream = {"x-request-id": request_id}
    traceparent = request.headers.get("traceparent")
    if traceparent:
        upstream["traceparent"] = traceparent
    return Ctx(
        request_id=request_id,
        principal=principal,
        endpoint=endpoint,
        body=body,
        model=model,
        stream=bool(body.get("stream")) and endpoint == "chat",
        deadline=Deadline(time.monotonic() + seconds, time.monotonic),
        scope=workflow_scope(request, principal),
        sdk_retrying=retry_count.isdigit() and int(retry_count) > 0,
        upstream_headers=upstream,
    )
