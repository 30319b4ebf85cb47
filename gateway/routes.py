"""HTTP endpoints: parse -> pipeline -> render. Errors are translated once, here."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from accounting.errors import AccountingError, BudgetExceeded, GuardrailRefused, StoreReset
from gateway import idempotency, key_limits, pipeline
from gateway.context import Answer, Ctx, response_headers
from gateway.errors import GatewayError, translate
from gateway.exchange import Exchange
from gateway.incoming import Incoming
from gateway.providers.base import Endpoint
from gateway.relay import SSEResponse
from gateway.request import build_ctx, gateway_key, loop_fingerprint, read_json
from gateway.runtime import Runtime
from gateway.telemetry import logging as log
from gateway.telemetry import metrics
from gateway.translate.errors import render
from policies.errors import PolicyError, UpstreamError
from policies.idempotency import Record

JSON = "application/json"
READY_TIMEOUT_S = 2.0


def runtime(request: Incoming) -> Runtime:
    app = request.app  # the FastPath on the hot path, else the Starlette app
    rt: Runtime = getattr(app, "runtime", None) or app.state.runtime
    return rt


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type=JSON)


def error_response(
    error: GatewayError, headers: dict[str, str] | None = None, api: str = "chat"
) -> Response:
    return Response(
        render(api, error), error.status, {**(headers or {}), **error.headers}, media_type=JSON
    )


async def chat_completions(request: Incoming) -> Response:
    return await _proxy(request, "chat")


async def embeddings(request: Incoming) -> Response:
    return await _proxy(request, "embeddings")


async def _proxy(request: Incoming, endpoint: Endpoint) -> Response:
    rt = runtime(request)
    request_id = rt.request_ids()
    try:
        principal = rt.auth.authenticate(gateway_key(request, endpoint))
        body, size, caching, raw = await read_json(request, rt.rules.defaults.max_body_bytes)
        fingerprint = loop_fingerprint(request, raw, rt.rules.workflows.max_identical_calls)
        ctx = build_ctx(rt, request, principal, body, endpoint, request_id, fingerprint)
        ctx.body_bytes, ctx.caching = size, caching
        ctx.span = rt.tracing.start_request(request.headers, endpoint, ctx.model)
    except GatewayError as exc:
        metrics.REQUESTS.labels("other", str(exc.status)).inc()
        log.access(
            {
                "request_id": request_id,
                "endpoint": endpoint,
                "status": exc.status,
                "error": exc.code,
            }
        )
        return error_response(exc, {"x-request-id": request_id}, endpoint)
    return await _serve(rt, request, ctx)


async def _serve(rt: Runtime, request: Incoming, ctx: Ctx) -> Response:
    ex = Exchange(rt, ctx)
    try:
        guard = await idempotency.begin(rt, request, ctx)
    except (GatewayError, AccountingError) as exc:
        return await ex.fail(_translate(exc))
    if isinstance(guard, Response):
        await ex.finish(guard.status_code, "replayed")
        return guard
    ex.begin(guard)
    try:
        return await _run(rt, ctx, ex)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if ex.cut_short and task is not None and not ex.finished:  # the kill switch
            task.uncancel()
            return await ex.fail(_translate(GuardrailRefused("cancelled", detail="cancelled")))
        await asyncio.shield(rt.track(ex.finish(499, "interrupted")))
        raise
    except BaseException:  # a bug: the end still happens
        await asyncio.shield(rt.track(ex.finish(499, "interrupted")))
        raise


async def _run(rt: Runtime, ctx: Ctx, ex: Exchange) -> Response:
    try:
        await key_limits.admit(rt, ctx)
        answer = await pipeline.run(rt, ctx)
    except UpstreamError as exc:
        if exc.passthrough and exc.body is not None:
            return await _passthrough(ex, exc)
        return await ex.fail(translate(exc))
    except (GatewayError, PolicyError, AccountingError, TimeoutError) as exc:
        return await ex.fail(_translate(exc))
    if isinstance(answer, Answer):
        headers = {**answer.headers, **response_headers(ctx)}
        record = Record(answer.status, idempotency.record_headers(headers), answer.body)
        await ex.finish(answer.status, None, record)
        return Response(answer.body, answer.status, headers)
    return SSEResponse(ex, answer, response_headers(ctx, with_cost=False))  # type: ignore[return-value]


async def _passthrough(ex: Exchange, exc: UpstreamError) -> Response:
    """An upstream client error, answered unchanged (and stored for replays)."""
    assert exc.body is not None
    status = exc.status or 502
    headers = response_headers(ex.ctx)
    record = Record(status, idempotency.record_headers(headers), exc.body)
    await ex.finish(status, "upstream_client_error", record)
    return Response(exc.body, status, headers, media_type=JSON)


def _translate(exc: Exception) -> GatewayError:
    if isinstance(exc, TimeoutError):
        return GatewayError(
            504,
            "deadline_exceeded",
            "the request's deadline passed before an answer was ready "
            "(raise X-Request-Timeout to allow longer)",
            should_retry=False,
        )
    if isinstance(exc, BudgetExceeded):
        metrics.BUDGET_REJECTIONS.labels(exc.scope).inc()
        log.event("budget_rejected", scope=exc.scope, unit=exc.unit)
    if isinstance(exc, GuardrailRefused):
        metrics.GUARDRAIL_REJECTIONS.labels(exc.reason).inc()
        log.event("guardrail_refused", reason=exc.reason, limit=exc.limit, value=exc.value)
    return translate(exc)


async def list_models(request: Request) -> Response:
    rt = runtime(request)
    try:
        principal = rt.auth.authenticate(gateway_key(request, "messages"))
    except GatewayError as exc:
        return error_response(exc)
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "spendgate"}
        for name in rt.models
        if principal.may_use(name)
    ]
    return json_response({"object": "list", "data": data})


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when a write to the store goes through in time (a full disk, a wedged
    writer, a paused or reset Redis: 503). Details only for the metrics key (when one
    is configured), and never an address."""
    rt = runtime(request)
    details = rt.auth.may_read_metrics(request.headers.get("authorization"))
    problem = await _store_problem(rt)
    if problem is None:
        body: dict[str, Any] = {"status": "ready"}
        if details:
            body["models"] = len(rt.models)
        return json_response(body)
    body = {"status": "unavailable"}
    if details:
        body["store"] = problem
        reset = rt.store.reset_info()
        if reset is not None:
            body["detected"] = reset
    return json_response(body, 503)


async def _store_problem(rt: Runtime) -> str | None:
    if rt.store.reset_info() is not None:
        return "reset: the store lost its data"
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await rt.store.ping()
    except TimeoutError:
        return "timed out"
    except StoreReset:
        return "reset: the store lost its data"
    except AccountingError:
        return "unavailable"
    return None


async def prometheus(request: Request) -> Response:
    rt = runtime(request)
    if not rt.auth.may_read_metrics(request.headers.get("authorization")):
        return error_response(
            GatewayError(
                401,
                "invalid_api_key",
                "/metrics needs the metrics key (auth.metrics_key_env): "
                "'Authorization: Bearer <metrics key>'",
            )
        )
    rt.inflight.export()
    body, content_type = metrics.exposition()
    return Response(body, 200, media_type=content_type)
