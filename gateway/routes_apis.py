"""The endpoints of the other client APIs (Responses, Messages), one model, and the JSON
answers to paths and methods the gateway does not serve."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from accounting.tokens import estimate_chat_prompt, prompt_upper_bound
from gateway import routes
from gateway.errors import GatewayError
from gateway.incoming import Incoming
from gateway.providers.anthropic import AnthropicProvider
from gateway.request import anthropic_headers, check_model, gateway_key, read_json
from gateway.translate.views import chat_view
from policies.errors import UpstreamError

SERVED = (
    "POST /v1/chat/completions, /v1/embeddings, /v1/responses, /v1/messages, "
    "/v1/messages/count_tokens; GET /v1/models"
)


async def responses(request: Incoming) -> Response:
    return await routes._proxy(request, "responses")


async def messages(request: Incoming) -> Response:
    return await routes._proxy(request, "messages")


def api_of(path: str) -> str:
    return "messages" if path.startswith("/v1/messages") else "chat"


async def count_tokens(request: Request) -> Response:
    """The prompt's tokens: Anthropic-kind models ask their provider (free); others are
    counted by the gateway's tokenizer on the request's chat translation."""
    rt = routes.runtime(request)
    try:
        principal = rt.auth.authenticate(gateway_key(request, "messages"))
        body, size, _, _ = await read_json(request, rt.rules.defaults.max_body_bytes)
        m = rt.models[check_model(rt, principal, body, "chat")]
        if not isinstance(m.provider, AnthropicProvider):
            view = chat_view("messages", body)
            count = await rt.counter.run(lambda: estimate_chat_prompt(view, m.upstream_model))
            # The counting pool is busy: the byte bound, which no count exceeds.
            counted = count if count is not None else prompt_upper_bound(body, size)
            return routes.json_response({"input_tokens": counted})
        headers = {**anthropic_headers(request), "x-request-id": rt.request_ids()}
        sent = {**body, "model": m.upstream_model}
        async with asyncio.timeout(rt.rules.defaults.request_timeout_s):
            status, payload = await m.provider.count_tokens(sent, headers)
    except GatewayError as exc:
        return routes.error_response(exc, api="messages")
    except (UpstreamError, TimeoutError) as exc:
        message = getattr(exc, "message", None) or "the provider did not answer in time"
        error = GatewayError(502, "upstream_error", f"counting tokens failed: {message}")
        return routes.error_response(error, api="messages")
    return routes.json_response(payload, status)


async def get_model(request: Request) -> Response:
    rt = routes.runtime(request)
    name = request.path_params["model"]
    try:
        principal = rt.auth.authenticate(gateway_key(request, "messages"))
    except GatewayError as exc:
        return routes.error_response(exc)
    if name not in rt.models or not principal.may_use(name):
        error = GatewayError(
            404,
            "model_not_found",
            f"no model named {name!r} is available to this key; GET /v1/models lists them",
        )
        return routes.error_response(error)
    model: dict[str, Any] = {"id": name, "object": "model", "created": 0, "owned_by": "spendgate"}
    # And what Anthropic's SDK reads of a model:
    model.update(type="model", display_name=name, created_at="1970-01-01T00:00:00Z")
    return routes.json_response(model)


async def not_found(request: Request, exc: Exception) -> Response:
    path = request.url.path
    error = GatewayError(
        404,
        "not_found",
        f"{request.method} {path}: this endpoint is not served by the gateway (it serves {SERVED})",
        should_retry=False,
    )
    return routes.error_response(error, api=api_of(path))


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    path = request.url.path
    headers = exc.headers if isinstance(exc, HTTPException) and exc.headers else {}
    allowed = next((v for k, v in headers.items() if k.lower() == "allow"), "")
    error = GatewayError(
        405,
        "method_not_allowed",
        f"{request.method} is not allowed on {path}"
        + (f" (allowed: {allowed})" if allowed else ""),
        headers={"allow": allowed} if allowed else None,
        should_retry=False,
    )
    return routes.error_response(error, api=api_of(path))
