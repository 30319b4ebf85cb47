"""HTTP endpoints: parse -> pipeline -> render. Errors are translated once, here."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from accounting.errors import AccountingError, BudgetExceeded
from gateway import idempotency, pipeline
from gateway.context import Answer, Ctx, response_headers
from gateway.errors import GatewayError, translate
from gateway.providers.base import Endpoint
from gateway.relay import SSEResponse
from gateway.request import build_ctx, read_json
from gateway.runtime import Runtime
from gateway.telemetry import access, metrics
from gateway.telemetry import logging as log
from policies.errors import PolicyError, UpstreamError
from policies.idempotency import Record

JSON = "application/json"


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type=JSON)


def error_response(error: GatewayError, headers: dict[str, str] | None = None) -> Response:
    return Response(
        error.body(), error.status, {**(headers or {}), **error.headers}, media_type=JSON
    )


async def chat_completions(request: Request) -> Response:
    return await _proxy(request, "chat")


async def embeddings(request: Request) -> Response:
    return await _proxy(request, "embeddings")


async def _proxy(request: Request, endpoint: Endpoint) -> Response:
    rt = runtime(request)
    request_id = rt.request_ids()
    try:
        principal = rt.auth.authenticate(request.headers.get("authorization"))
        body, size = await read_json(request, rt.config.defaults.max_body_bytes)
        ctx = build_ctx(rt, request, principal, body, endpoint, request_id)
        ctx.body_bytes = size
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
        return error_response(exc, {"x-request-id": request_id})
    return await _serve(rt, request, ctx)


async def _serve(rt: Runtime, request: Request, ctx: Ctx) -> Response:
    model = rt.labels.model(ctx.model)
    try:
        guard = await idempotency.begin(rt, request, ctx)
    except (GatewayError, AccountingError) as exc:
        return _failed(rt, ctx, _translate(exc))
    if isinstance(guard, Response):
        access.finish(rt, ctx, guard.status_code, "replayed")
        return guard
    rt.inflight.start(model, ctx.request_id)
    try:
        response = await _run(rt, ctx, guard)
    except BaseException:
        rt.inflight.stop(model, ctx.request_id)
        raise
    finally:
        if guard is not None and not guard.done and not guard.streaming:
            await asyncio.shield(rt.track(idempotency.finish(rt, guard, None)))
    if not isinstance(response, SSEResponse):
        rt.inflight.stop(model, ctx.request_id)
    return response


async def _run(rt: Runtime, ctx: Ctx, claim: idempotency.Claim | None) -> Response:
    try:
        answer = await pipeline.run(rt, ctx)
    except UpstreamError as exc:
        if exc.passthrough and exc.body is not None:
            status = exc.status or 502
            headers = response_headers(ctx)
            await idempotency.finish(
                rt, claim, Record(status, idempotency.record_headers(headers), exc.body)
            )
            access.finish(rt, ctx, status, "upstream_client_error")
            return Response(exc.body, status, headers, media_type=JSON)
        return _failed(rt, ctx, translate(exc))
    except (GatewayError, PolicyError, AccountingError, TimeoutError) as exc:
        return _failed(rt, ctx, _translate(exc))
    if isinstance(answer, Answer):
        headers = {**answer.headers, **response_headers(ctx)}
        record = Record(answer.status, idempotency.record_headers(headers), answer.body)
        await idempotency.finish(rt, claim, record)
        access.finish(rt, ctx, answer.status)
        return Response(answer.body, answer.status, headers)
    headers = response_headers(ctx, with_cost=False)
    if claim is not None:
        claim.streaming = True
    return SSEResponse(rt, ctx, answer, headers, claim)  # type: ignore[return-value]


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
    return translate(exc)


def _failed(rt: Runtime, ctx: Ctx, error: GatewayError) -> Response:
    access.finish(rt, ctx, error.status, error.code)
    return error_response(error, response_headers(ctx))


async def list_models(request: Request) -> Response:
    rt = runtime(request)
    try:
        principal = rt.auth.authenticate(request.headers.get("authorization"))
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
    rt = runtime(request)
    try:
        await rt.store.ping()
    except AccountingError as exc:
        return json_response({"status": "unavailable", "store": str(exc)}, 503)
    return json_response({"status": "ready", "models": len(rt.models)})


async def prometheus(request: Request) -> Response:
    runtime(request).inflight.export()
    body, content_type = metrics.exposition()
    return Response(body, 200, media_type=content_type)
