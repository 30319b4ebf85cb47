"""``/admin/workflows``: any key's workflows, for the admin key only."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from accounting.errors import AccountingError
from accounting.pricing import micros_to_usd, usd_to_micros
from gateway.errors import GatewayError, bad_request, translate
from gateway.request import MAX_BUDGET_MICROS, MAX_BUDGET_TOKENS
from gateway.routes import error_response, json_response, runtime
from gateway.runtime import Runtime
from gateway.telemetry import logging as log
from gateway.workflow_status import not_found, status_of, usd, workflow_id_of
from gateway.workflows import cancel_workflow, json_body


def _admin(request: Request) -> Runtime:
    rt = runtime(request)
    if not rt.auth.is_admin(request.headers.get("authorization")):
        raise GatewayError(
            401, "invalid_api_key", "this endpoint needs the admin key (auth.admin_key_env)"
        )
    return rt


async def list_stalled(request: Request) -> Response:
    try:
        rt = _admin(request)
        if request.query_params.get("status", "stalled") != "stalled":
            raise bad_request("only status=stalled can be listed across keys")
        idle_before = rt.wall() - rt.rules.workflows.stall_after_s
        stalled = await rt.store.list_stalled(idle_before, limit=500)
    except (GatewayError, AccountingError) as exc:
        return error_response(translate(exc))
    return json_response({"workflows": [status_of(rt, wf) for wf in stalled]})


async def workflow(request: Request) -> Response:
    """GET: any key's workflow. PATCH ``{"budget_usd": "..", "budget_tokens": N}``: set caps."""
    try:
        rt = _admin(request)
        key, workflow_id = request.path_params["key"], workflow_id_of(request)
        if request.method == "GET":
            wf = await rt.store.get_workflow(key, workflow_id, rt.wall())
        else:
            cap, tokens = _caps(await json_body(request, {"budget_usd", "budget_tokens"}))
            wf = await rt.store.set_workflow_cap(key, workflow_id, cap, tokens, rt.wall())
            log.event(
                "workflow_cap_set",
                key=key,
                workflow_id=workflow_id,
                budget_usd=usd(cap),
                budget_tokens=tokens,
            )
        if wf is None:
            raise not_found(workflow_id)
    except (GatewayError, AccountingError) as exc:
        return error_response(translate(exc))
    return json_response(status_of(rt, wf))


async def cancel(request: Request) -> Response:
    """The kill switch, for any key's workflow."""
    try:
        rt = _admin(request)
        key, workflow_id = request.path_params["key"], workflow_id_of(request)
        wf = await cancel_workflow(rt, key, workflow_id, "admin")
    except (GatewayError, AccountingError) as exc:
        return error_response(translate(exc))
    return json_response(status_of(rt, wf))


def _caps(body: dict[str, object]) -> tuple[int | None, int | None]:
    cap, tokens = body.get("budget_usd"), body.get("budget_tokens")
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


ROUTES = [
    Route("/admin/workflows", list_stalled, methods=["GET"]),
    Route("/admin/workflows/{key}/{workflow_id}", workflow, methods=["GET", "PATCH"]),
    Route("/admin/workflows/{key}/{workflow_id}/cancel", cancel, methods=["POST"]),
]
