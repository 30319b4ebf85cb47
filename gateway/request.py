"""Parse and check what the client sent: body, model, headers. Bad input -> 400-class
GatewayError with a message naming the offending field or header."""

from __future__ import annotations

import hashlib
import math
import re
import time
from typing import Any

import orjson

from accounting.budgets import Scope
from accounting.pricing import micros_to_usd, usd_to_micros
from gateway.auth import Principal
from gateway.context import Ctx
from gateway.errors import GatewayError, bad_request
from gateway.incoming import Incoming
from gateway.providers.base import Endpoint
from gateway.runtime import Runtime
from policies.deadline import Deadline, timeout_seconds

WORKFLOW_ID = _ID = re.compile(r"^[\x21-\x7e]{1,200}$")
_RETRY_COUNT = re.compile(r"^[0-9]{1,4}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_TOKENS = re.compile(r"^\s*[0-9]{1,16}\s*$")

# Every number a client sends is bounded where it is parsed (a 400 names the field and
# the range), so nothing out of range reaches money arithmetic or a store.
MAX_BUDGET_MICROS = 10**15  # $1,000,000,000
MAX_BUDGET_TOKENS = 10**12
MAX_OUTPUT_LIMIT = 10_000_000  # max_tokens and its siblings
MAX_CHOICES = 128
OUTPUT_LIMITS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
MAX_DEPTH = 254  # orjson's own limit when serialising
MAX_WORKFLOW_TIMEOUT_S = 365 * 86400
MAX_WORKFLOW_CALLS = 10**9
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


async def read_json(request: Incoming, limit: int) -> tuple[dict[str, Any], int, bool, bytes]:
    """The body parsed (once), its size in bytes, whether it marks anything for a
    provider's prompt cache (only then can the request be billed cache writes), and the
    raw bytes (for a fingerprint; dropped with the request)."""
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
    raw = b"".join(chunks)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the request body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    _check_depth(raw, body)
    return body, size, b'"cache_control"' in raw, raw


def loop_fingerprint(request: Incoming, raw: bytes, max_identical: int) -> str | None:
    """The loop guard's fingerprint of a request (model, messages and parameters: its
    body's bytes), when the guard applies: a workflow, and no Idempotency-Key (an
    idempotent repeat is a replay, never a loop)."""
    headers = request.headers
    if max_identical <= 0 or "x-workflow-id" not in headers or "idempotency-key" in headers:
        return None
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def _check_depth(raw: bytes, body: dict[str, Any]) -> None:
    """The body can be serialised again (for the upstream, a fingerprint, a count):
    orjson refuses to nest deeper than its limit. Only a body with that many brackets
    at all can nest that deep, and counting bytes costs next to nothing."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return
    try:
        orjson.dumps(body)
    except TypeError:
        raise bad_request(f"the request body nests deeper than {MAX_DEPTH} levels") from None


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        "request_too_large",
        f"the request body is larger than the gateway's limit of {limit} bytes",
        should_retry=False,
    )


def check_model(rt: Runtime, principal: Principal, body: dict[str, Any], endpoint: Endpoint) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not 0 < len(model) <= 256:
        raise bad_request("'model' is required and must be a string of 1-256 characters", "model")
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
    wanted = "embeddings" if endpoint == "embeddings" else "chat"
    if runtime.kind != wanted:
        raise bad_request(f"the model {model!r} is a {runtime.kind} model, not {wanted}", "model")
    check_body(body, endpoint)
    return model


def check_body(body: dict[str, Any], endpoint: Endpoint) -> None:
    """The fields that reach the gateway's own decisions have the right types and
    ranges; the rest is the provider's to judge."""
    if endpoint == "responses":
        check_responses(body)
    if endpoint == "messages":
        check_messages(body)
    if endpoint == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad_request("'messages' must be a non-empty list", "messages")
        for index, message in enumerate(messages):
            if not isinstance(message, dict):
                raise bad_request(f"'messages[{index}]' must be an object", "messages")
    if not isinstance(body.get("stream", False), bool):
        raise bad_request("'stream' must be true or false", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object", "stream_options")
    for name in OUTPUT_LIMITS:
        _bounded_int(body, name, 1, MAX_OUTPUT_LIMIT)
    _bounded_int(body, "n", 1, MAX_CHOICES)


def check_responses(body: dict[str, Any]) -> None:
    value = body.get("input")
    if not (isinstance(value, str) and value) and not (isinstance(value, list) and value):
        raise bad_request("'input' must be a non-empty string or list of items", "input")


def check_messages(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages: must be a non-empty list", "messages")
    if not all(isinstance(message, dict) for message in messages):
        raise bad_request("messages: each message must be an object", "messages")
    if "max_tokens" not in body:
        raise bad_request("max_tokens: Field required", "max_tokens")


ANTHROPIC_HEADERS = ("anthropic-version", "anthropic-beta")


def anthropic_headers(request: Incoming) -> dict[str, str]:
    """The Anthropic headers a Messages client sent, passed on to Anthropic providers."""
    out = {}
    for name in ANTHROPIC_HEADERS:
        value = request.headers.get(name)
        if value is not None and len(value) <= 512 and value.isprintable():
            out[name] = value
    return out


def gateway_key(request: Incoming, endpoint: str) -> str | None:
    """The Authorization header, or (Messages clients) the gateway key in ``x-api-key``."""
    authorization = request.headers.get("authorization")
    if authorization is None and endpoint == "messages":
        key = request.headers.get("x-api-key")
        return None if key is None else f"Bearer {key}"
    return authorization


def _bounded_int(body: dict[str, Any], name: str, low: int, high: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_request(f"'{name}' must be a whole number from {low} to {high}", name)


def _header_id(request: Incoming, name: str) -> str | None:
    value = request.headers.get(name)
    if value is None:
        return None
    if not _ID.match(value):
        raise bad_request(f"{name} must be 1-200 printable ASCII characters without spaces")
    return value


WORKFLOW_HEADERS = (
    "x-workflow-budget-usd",
    "x-workflow-budget-tokens",
    "x-workflow-timeout-s",
    "x-workflow-max-calls",
    "x-workflow-name",
)


def workflow_scope(
    request: Incoming, principal: Principal, fingerprint: str | None = None, max_identical: int = 0
) -> Scope:
    headers = request.headers
    workflow = _header_id(request, "x-workflow-id")
    cap_text = headers.get("x-workflow-budget-usd")
    tokens_text = headers.get("x-workflow-budget-tokens")
    step = headers.get("x-workflow-step")
    if workflow is None and any(name in headers for name in WORKFLOW_HEADERS):
        raise bad_request(
            "X-Workflow-Budget-Usd, -Budget-Tokens, -Timeout-S, -Max-Calls and -Name "
            "need an X-Workflow-Id"
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
        timeout_s=_timeout_header(headers.get("x-workflow-timeout-s")),
        max_calls=_calls_header(headers.get("x-workflow-max-calls")),
        name=_name_header(headers.get("x-workflow-name")),
        fingerprint=fingerprint if workflow is not None else None,
        max_identical=max_identical,
    )


def _timeout_header(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        seconds = float(text) if len(text) <= 32 else math.inf
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_WORKFLOW_TIMEOUT_S:
        raise bad_request(
            f"X-Workflow-Timeout-S must be a number of seconds from 0 to {MAX_WORKFLOW_TIMEOUT_S}"
        )
    return seconds


def _calls_header(text: str | None) -> int | None:
    if text is None:
        return None
    if not _TOKENS.match(text) or not 1 <= int(text) <= MAX_WORKFLOW_CALLS:
        raise bad_request(
            f"X-Workflow-Max-Calls must be a whole number from 1 to {MAX_WORKFLOW_CALLS}"
        )
    return int(text)


def _name_header(text: str | None) -> str | None:
    if text is None:
        return None
    if not _NAME.match(text):
        raise bad_request("X-Workflow-Name must be 1-64 characters of A-Z a-z 0-9 _ . : -")
    return text


def _usd_header(text: str) -> int:
    try:
        micros = usd_to_micros(text)
    except ValueError as exc:
        raise bad_request(f"X-Workflow-Budget-Usd: {exc}") from None
    if micros > MAX_BUDGET_MICROS:
        raise bad_request(
            f"X-Workflow-Budget-Usd must be at most {micros_to_usd(MAX_BUDGET_MICROS)}"
        )
    return micros


def _tokens_header(text: str | None) -> int | None:
    if text is None:
        return None
    if not _TOKENS.match(text) or int(text) > MAX_BUDGET_TOKENS:
        raise bad_request(
            f"X-Workflow-Budget-Tokens must be a whole number from 0 to {MAX_BUDGET_TOKENS}"
        )
    return int(text)


def build_ctx(
    rt: Runtime,
    request: Incoming,
    principal: Principal,
    body: dict[str, Any],
    endpoint: Endpoint,
    request_id: str,
    fingerprint: str | None = None,
) -> Ctx:
    model = check_model(rt, principal, body, endpoint)
    defaults = rt.rules.defaults
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
    if endpoint == "messages":
        upstream.update(anthropic_headers(request))
    traceparent = request.headers.get("traceparent")
    if traceparent and _TRACEPARENT.match(traceparent):  # anything else is not forwarded
        upstream["traceparent"] = traceparent
    return Ctx(
        request_id=request_id,
        principal=principal,
        endpoint=endpoint,
        body=body,
        model=model,
        stream=bool(body.get("stream")) and endpoint != "embeddings",
        deadline=Deadline(time.monotonic() + seconds, time.monotonic),
        scope=workflow_scope(
            request, principal, fingerprint, rt.rules.workflows.max_identical_calls
        ),
        sdk_retrying=bool(_RETRY_COUNT.match(retry_count)) and int(retry_count) > 0,
        upstream_headers=upstream,
    )
