"""/admin/...: admin key only. Breakers, workflows (any key's), stalled workflows."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from accounting.errors import AccountingError
from gateway.errors import GatewayError, translate
from gateway.routes import error_response, json_response, runtime
from gateway.telemetry import logging as log


def _require_admin(request: Request) -> None:
    if not runtime(request).auth.is_admin(request.headers.get("authorization")):
        raise GatewayError(
            401, "invalid_api_key", "this endpoint needs the admin key (auth.admin_key_env)"
        )


async def list_breakers(request: Request) -> Response:
    try:
        _require_admin(request)
    except GatewayError as exc:
        return error_response(exc)
    rt = runtime(request)
    breakers = {
        name: {
            "state": m.route.breaker.state,
            "failures": m.route.breaker.fail_counter,
            "seconds_until_half_open": round(m.route.breaker.seconds_until_half_open(), 3),
        }
        for name, m in rt.models.items()
    }
    return json_response({"breakers": breakers})


async def reset_breaker(request: Request) -> Response:
    try:
        _require_admin(request)
        rt = runtime(request)
        model = request.path_params["model"]
        m = rt.models.get(model)
        if m is None:
            raise GatewayError(404, "model_not_found", f"no model named {model!r}")
    except GatewayError as exc:
        return error_response(exc)
    m.route.breaker.reset()
    return json_response({"model": model, "state": m.route.breaker.state})


async def store_status(request: Request) -> Response:
    """GET: whether the store is in the reset state (it lost its data), and why."""
    try:
        _require_admin(request)
    except GatewayError as exc:
        return error_response(exc)
    rt = runtime(request)
    info = rt.store.reset_info()
    return json_response({"reset": info is not None, "detected": info})


async def accept_reset(request: Request) -> Response:
    """POST: the operator confirms the store lost its data; budgets resume (on every
    replica at its next store check). Spend and holds from before the loss are gone."""
    try:
        _require_admin(request)
        rt = runtime(request)
        info = rt.store.reset_info()
        await rt.store.accept_reset(rt.wall())
    except (GatewayError, AccountingError) as exc:
        return error_response(translate(exc))
    log.event("store_reset_accepted", level=30, detected=info)
    return json_response({"reset": False, "accepted": info})


ROUTES = [
    Route("/admin/store", store_status, methods=["GET"]),
    Route("/admin/store/accept-reset", accept_reset, methods=["POST"]),
    Route("/admin/breakers", list_breakers, methods=["GET"]),
    Route("/admin/breakers/{model}/reset", reset_breaker, methods=["POST"]),
]
