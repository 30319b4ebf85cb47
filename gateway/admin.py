"""/admin/...: admin key only. Breakers, workflows (any key's), stalled workflows."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import GatewayError
from gateway.routes import error_response, json_response, runtime


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
            "state": route.breaker.state,
            "failures": route.breaker.fail_counter,
            "seconds_until_half_open": round(route.breaker.seconds_until_half_open(), 3),
        }
        for name, route in rt.routes.items()
    }
    return json_response({"breakers": breakers})


async def reset_breaker(request: Request) -> Response:
    try:
        _require_admin(request)
        rt = runtime(request)
        model = request.path_params["model"]
        route = rt.routes.get(model)
        if route is None:
            raise GatewayError(404, "model_not_found", f"no model named {model!r}")
    except GatewayError as exc:
        return error_response(exc)
    route.breaker.reset()
    return json_response({"model": model, "state": route.breaker.state})


ROUTES = [
    Route("/admin/breakers", list_breakers, methods=["GET"]),
    Route("/admin/breakers/{model}/reset", reset_breaker, methods=["POST"]),
]
