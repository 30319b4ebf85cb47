"""Workflow status: ``/workflows/{id}`` for the owning key, ``/admin/workflows`` for admins."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from accounting.errors import AccountingError
from accounting.pricing import micros_to_usd, usd_to_micros
from accounting.store.base import WorkflowState
from gateway.errors import GatewayError, bad_request, translate
from gateway.request import MAX_BUDGET_MICROS, MAX_BUDGET_TOKENS, WORKFLOW_ID
from gateway.routes import error_response, json_response, runtime
from gateway.runtime import Runtime
from gateway.telemetry import logging as log
from gateway.telemetry import metrics


def _usd(micros: int | None) -> str | None:
    return None if micros is None else micros_to_usd(micros)


def status_of(rt: Runtime, wf: WorkflowState) -> dict[str, Any]:
    stalled_after = rt.config.workflows.stall_after_s
    status = wf.status
    if status == "running" and rt.wall() - wf.last_seen_at > stalled_after:
        status = "stalled"  # type: ignore[assignment]
    return {
        "id": wf.workflow_id,
        "key": wf.key,
        "status": status,
        "budget_usd": _usd(wf.cap_micros),
        "budget_tokens": wf.cap_tokens,
        "spent_usd": micros_to_usd(wf.spent_micros),
        "reserved_usd": micros_to_usd(wf.reserved_micros),
        "remaining_usd": _usd(wf.remaining_micros),
        "tokens": {
            "total": wf.tokens_spent,
            "reserved": wf.tokens_reserved,
            **dict(wf.tokens_by_kind),
        },
        "calls": wf.calls,
        "retries": wf.retries,
        "fallbacks": wf.fallbacks,
        "partial_streams": wf.partial_streams,
        "expired_holds": wf.expired_holds,
        "expired_holds_usd": micros_to_usd(wf.expired_micros),
        "started_at": wf.started_at,
        "last_heartbeat_at": wf.last_seen_at,
        "current_step": wf.step,
        "completed_at": wf.completed_at,
    }


def _not_found(workflow_id: str) -> GatewayError:
    shown = workflow_id if len(workflow_id) <= 200 else workflow_id[:200] + "..."
    return GatewayError(404, "workflow_not_found", f"no workflow {shown!r} under this key")


def _workflow_id(request: Request) -> str:
    """The path's workflow id; one no request could have named is not looked up."""
    workflow_id: str = request.path_params["workflow_id"]
    if not WORKFLOW_ID.match(workflow_id):
        raise _not_found(workflow_id)
    return workflow_id


async def get_workflow(request: Request) -> Response:
    rt = runtime(request)
    try:
        principal = rt.auth.authenticate(request.headers.get("authorization"))
        workflow_id = _workflow_id(request)
        wf = await rt.store.get_workflow(principal.name, workflow_id, rt.wall())
        if wf is None:
            raise _not_found(workflow_id)
    except (GatewayError, AccountingError) as exc:
        return error_response(translate(exc))
    return json_response(status_of(rt, wf))


async def complete_workflow(request: Request) -> Response:
    rt = runtime(request)
    try:
        principal = rt.auth.authenticate(request.headers.get("authorization"))
        workflow_id = _workflow_id(request)
        before = await rt.store.get_workflow(principal.name, workflow_id, rt.wall())
        wf = await rt.store.complete_workflow(principal.name, workflow_id, rt.wall())
        if wf is None:
            raise _not_found(workflow_id)
    except (GatewayError, AccountingError) as exc:
        return error_response(translate(exc))
    if before is not None and before.status != "completed":
        metrics.WORKFLOW_COST.observe(wf.spent_micros / 1_000_000)
        log.event(
            "workflow_completed",
            key=wf.key,
            workflow_id=workflow_id,
            spent_usd=micros_to_usd(wf.spent_micros),
        )
    return json_response(status_of(rt, wf))


def _admin(request: Request) -> Runtime:
    rt = runtime(request)
    if not rt.auth.is_admin(request.headers.get("authorization")):
        raise GatewayError(
            401, "invalid_api_key", "this endpoint needs the admin key (auth.admin_key_env)"
        )
    return rt


async def admin_list_workflows(request: Request) -> Response:
    try:
        rt = _admin(request)
        if request.query_params.get("status", "stalled") != "stalled":
            raise bad_request("only status=stalled can be listed")
        idle_before = rt.wall() - rt.config.workflows.stall_after_s
        stalled = await rt.store.list_stalled(idle_before, limit=500)
    except (GatewayError, AccountingError) as exc:
        return error_response(translate(exc))
    return json_response({"workflows": [status_of(rt, wf) for wf in stalled]})


async def admin_workflow(request: Request) -> Response:
    """GET: any key's workflow. PATCH ``{"budget_usd": "..", "budget_tokens": N}``: set caps."""
    try:
        rt = _admin(request)
        key, workflow_id = request.path_params["key"], _workflow_id(request)
        if request.method == "GET":
            wf = await rt.store.get_workflow(key, workflow_id, rt.wall())
        else:
            cap, tokens = await _caps(request)
            wf = await rt.store.set_workflow_cap(key, workflow_id, cap, tokens, rt.wall())
            log.event(
                "workflow_cap_set",
                key=key,
                workflow_id=workflow_id,
                budget_usd=_usd(cap),
                budget_tokens=tokens,
            )
        if wf is None:
            raise _not_found(workflow_id)
    except (GatewayError, AccountingError) as exc:
        return error_response(translate(exc))
    return json_response(status_of(rt, wf))


async def _caps(request: Request) -> tuple[int | None, int | None]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise bad_request("the request body is not valid JSON") from None
    if not isinstance(body, dict) or not set(body) <= {"budget_usd", "budget_tokens"}:
        raise bad_request('send {"budget_usd": "10.00", "budget_tokens": 100000}')
    cap = body.get("budget_usd")
    tokens = body.get("budget_tokens")
    try:
        micros = usd_to_micros(str(cap)) if cap is not None else None
    except ValueError as exc:
        raise bad_request(f"budget_usd: {exc}") from None
    if micros is not None and micros > MAX_BUDGET_MICROS:
        raise bad_request(f"budget_usd must be at most {micros_to_usd(MAX_BUDGET_MICROS)}")
    if tokens is not None and (
        isinstance(tokens, bool)
        or not isinstance(tokens, int)
        or not 0 <= tokens <= MAX_BUDGET_TOKENS
    ):
        raise bad_request(f"budget_tokens must be a whole number from 0 to {MAX_BUDGET_TOKENS}")
    return micros, tokens


async def watch_stalls(rt: Runtime) -> None:
    """Keep the stall and in-flight gauges current; sweep expired store records."""
    interval = rt.config.workflows.check_interval_s
    while True:
        try:
            idle_before = rt.wall() - rt.config.workflows.stall_after_s
            metrics.WORKFLOWS_STALLED.set(await rt.store.count_stalled(idle_before))
            await rt.store.sweep(rt.wall())
        except AccountingError as exc:
            log.event("stall_check_failed", level=30, error=str(exc))
        rt.inflight.export()
        await asyncio.sleep(interval)


ROUTES = [
    Route("/workflows/{workflow_id}", get_workflow, methods=["GET"]),
    Route("/workflows/{workflow_id}/complete", complete_workflow, methods=["POST"]),
    Route("/admin/workflows", admin_list_workflows, methods=["GET"]),
    Route("/admin/workflows/{key}/{workflow_id}", admin_workflow, methods=["GET", "PATCH"]),
]
