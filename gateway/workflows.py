"""The owner's workflow API: status, listing, heartbeats, the kill switch, outcomes.

Every endpoint needs the workflow's own gateway key (a workflow id is scoped to it);
the admin equivalents are in ``gateway.admin_workflows``.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from accounting.errors import AccountingError
from accounting.pricing import micros_to_usd
from accounting.store.base import WorkflowState
from gateway import guardrails
from gateway.errors import GatewayError, bad_request, translate
from gateway.routes import error_response, json_response, runtime
from gateway.runtime import Runtime
from gateway.telemetry import logging as log
from gateway.telemetry import metrics
from gateway.workflow_status import not_found, status_of, workflow_id_of

MAX_BODY = 64 * 1024
STATUSES = ("running", "stalled", "completed", "cancelled")
MAX_PAGE = 500


async def json_body(request: Request, allowed: set[str]) -> dict[str, Any]:
    """A small JSON object body (empty: ``{}``) with only ``allowed`` keys."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise bad_request(f"the body is larger than {MAX_BODY} bytes")
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("the request body is not valid JSON") from None
    if not isinstance(body, dict) or not set(body) <= allowed:
        raise bad_request(f"send a JSON object with at most the keys {sorted(allowed)}")
    return body


async def get_workflow(request: Request) -> Response:
    rt = runtime(request)
    try:
        principal = rt.auth.authenticate(request.headers.get("authorization"))
        workflow_id = workflow_id_of(request)
        wf = await rt.store.get_workflow(principal.name, workflow_id, rt.wall())
        if wf is None:
            raise not_found(workflow_id)
    except (GatewayError, AccountingError) as exc:
        return error_response(translate(exc))
    return json_response(status_of(rt, wf))


async def list_workflows(request: Request) -> Response:
    """``GET /workflows?status=running|stalled|completed|cancelled&after=ID&limit=N``."""
    rt = runtime(request)
    try:
        principal = rt.auth.authenticate(request.headers.get("authorization"))
        status, after, limit = _listing(request)
        idle_before = rt.wall() - rt.rules.workflows.stall_after_s
        page, cursor = await rt.store.list_workflows(
            principal.name, status, idle_before, after, limit
        )
    except (GatewayError, AccountingError) as exc:
        return error_response(translate(exc))
    return json_response({"workflows": [status_of(rt, wf) for wf in page], "next": cursor})


def _listing(request: Request) -> tuple[str, str | None, int]:
    query = request.query_params
    status = query.get("status", "running")
    if status not in STATUSES:
        raise bad_request(f"status must be one of {', '.join(STATUSES)}")
    limit_text = query.get("limit", "100")
    if not limit_text.isascii() or not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE:
        raise bad_request(f"limit must be a whole number from 1 to {MAX_PAGE}")
    after = query.get("after")
    if after is not None and len(after) > 200:
        raise bad_request("after must be a workflow id")
    return status, after, int(limit_text)


async def heartbeat(request: Request) -> Response:
    """``{"step": "...", "progress": 0-100}``: alive between model calls."""
    rt = runtime(request)
    try:
        principal = rt.auth.authenticate(request.headers.get("authorization"))
        workflow_id = workflow_id_of(request)
        body = await json_body(request, {"step", "progress"})
        step, progress = _step(body.get("step")), _progress(body.get("progress"))
        wf = await rt.store.heartbeat(principal.name, workflow_id, rt.wall(), step, progress)
        if wf is None:
            raise not_found(workflow_id)
    except (GatewayError, AccountingError) as exc:
        return error_response(translate(exc))
    return json_response(status_of(rt, wf))


def _step(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 256:
        raise bad_request("step must be a string of 1-256 characters", "step")
    return value


def _progress(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request("progress must be a number from 0 to 100", "progress")
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise bad_request("progress must be a number from 0 to 100", "progress")
    return float(value)


async def cancel(request: Request) -> Response:
    """The kill switch: every later request is refused; requests in flight are cut."""
    rt = runtime(request)
    try:
        principal = rt.auth.authenticate(request.headers.get("authorization"))
        wf = await cancel_workflow(rt, principal.name, workflow_id_of(request), "owner")
    except (GatewayError, AccountingError) as exc:
        return error_response(translate(exc))
    return json_response(status_of(rt, wf))


async def cancel_workflow(rt: Runtime, key: str, workflow_id: str, by: str) -> WorkflowState:
    wf = await rt.store.cancel_workflow(key, workflow_id, rt.wall())
    if wf is None:
        raise not_found(workflow_id)
    cut = rt.cuts.cut((key, workflow_id))  # this replica's at once; the others poll
    metrics.WORKFLOWS_CANCELLED.labels(by).inc()
    log.event("workflow_cancelled", key=key, workflow_id=workflow_id, by=by, cut_here=cut)
    return wf


async def complete(request: Request) -> Response:
    """``{"status": "succeeded"|"failed", "error": "..."}``: the run is over."""
    rt = runtime(request)
    try:
        principal = rt.auth.authenticate(request.headers.get("authorization"))
        workflow_id = workflow_id_of(request)
        body = await json_body(request, {"status", "error"})
        outcome, error = _outcome(body)
        before = await rt.store.get_workflow(principal.name, workflow_id, rt.wall())
        wf = await rt.store.complete_workflow(
            principal.name, workflow_id, rt.wall(), outcome, error
        )
        if wf is None:
            raise not_found(workflow_id)
    except (GatewayError, AccountingError) as exc:
        return error_response(translate(exc))
    if before is not None and before.completed_at is None:
        await _completed(rt, wf)
    return json_response(status_of(rt, wf))


def _outcome(body: dict[str, Any]) -> tuple[Any, str | None]:
    outcome = body.get("status", "succeeded")
    if outcome not in ("succeeded", "failed"):
        raise bad_request("status must be succeeded or failed", "status")
    error = body.get("error")
    if error is not None and not isinstance(error, str):
        raise bad_request("error must be a string", "error")
    return outcome, error[:2000] if error else None


async def _completed(rt: Runtime, wf: WorkflowState) -> None:
    """Its cost into its kind's histogram and rolling median."""
    label = guardrails.cost_label(rt, wf.name)
    metrics.WORKFLOW_COST.labels(label).observe(wf.spent_micros / 1_000_000)
    if wf.name is not None and label != "other":
        await rt.store.note_completed_cost(wf.name, wf.spent_micros, rt.wall())
        await guardrails.refresh_medians(rt)
    log.event(
        "workflow_completed",
        key=wf.key,
        workflow_id=wf.workflow_id,
        workflow=wf.name,
        outcome=wf.outcome,
        spent_usd=micros_to_usd(wf.spent_micros),
    )


async def watch_stalls(rt: Runtime) -> None:
    """Keep the stall and in-flight gauges and the kinds' medians current; sweep
    expired store records."""
    interval = rt.rules.workflows.check_interval_s
    while True:
        try:
            idle_before = rt.wall() - rt.rules.workflows.stall_after_s
            metrics.WORKFLOWS_STALLED.set(await rt.store.count_stalled(idle_before))
            await rt.store.sweep(rt.wall())
        except AccountingError as exc:
            log.event("stall_check_failed", level=30, error=str(exc))
        await guardrails.refresh_medians(rt)
        rt.inflight.export()
        await asyncio.sleep(interval)


ROUTES = [
    Route("/workflows", list_workflows, methods=["GET"]),
    Route("/workflows/{workflow_id}", get_workflow, methods=["GET"]),
    Route("/workflows/{workflow_id}/heartbeat", heartbeat, methods=["POST"]),
    Route("/workflows/{workflow_id}/cancel", cancel, methods=["POST"]),
    Route("/workflows/{workflow_id}/complete", complete, methods=["POST"]),
]
