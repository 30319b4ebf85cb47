"""The composition root: ``gateway.compose`` builds every object from the config, this
module wires them into the ASGI application; the lifespan opens and closes the HTTP
pool and the store."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from accounting.store.base import Store
from gateway import (
    admin,
    admin_workflows,
    compose,
    lifecycle,
    routes,
    routes_apis,
    server,
    workflows,
)
from gateway.config import FileConfig, Secrets, load, log_level_from_env
from gateway.incoming import HotRequest
from gateway.telemetry import logging as log


def create_app(
    config: FileConfig,
    secrets: Secrets,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
    store: Store | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastPath:
    """The gateway for ``config``; ``clock`` drives breakers, ``wall`` leases and expiry."""
    server.configure(config.server)
    rt = compose.runtime(
        config, secrets, clock=clock, wall=wall, store=store, tracer_provider=tracer_provider
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with lifecycle.running(rt):
            yield

    handlers = {404: routes_apis.not_found, 405: routes_apis.method_not_allowed}
    app = Starlette(routes=_routes(), lifespan=lifespan, exception_handlers=handlers)
    app.state.runtime = rt
    return FastPath(app)


class FastPath:
    """The two proxy endpoints straight to their handlers; the rest through Starlette.

    Starlette's middleware and router cost a tenth of a proxied request's CPU; the
    proxy handlers translate every error themselves, so they need neither.
    """

    HOT = {
        "/v1/chat/completions": routes.chat_completions,
        "/v1/embeddings": routes.embeddings,
        "/v1/responses": routes_apis.responses,
        "/v1/messages": routes_apis.messages,
    }

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state
        self.runtime = app.state.runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.HOT.get(scope["path"])
            if handler is not None:
                scope["app"] = self
                response = await handler(HotRequest(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _routes() -> list[Route]:
    return [
        Route("/v1/chat/completions", routes.chat_completions, methods=["POST"]),
        Route("/v1/embeddings", routes.embeddings, methods=["POST"]),
        Route("/v1/responses", routes_apis.responses, methods=["POST"]),
        Route("/v1/messages", routes_apis.messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", routes_apis.count_tokens, methods=["POST"]),
        Route("/v1/models", routes.list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", routes_apis.get_model, methods=["GET"]),
        Route("/healthz", routes.healthz, methods=["GET"]),
        Route("/readyz", routes.readyz, methods=["GET"]),
        Route("/metrics", routes.prometheus, methods=["GET"]),
        *admin.ROUTES,
        *admin_workflows.ROUTES,
        *workflows.ROUTES,
    ]


def app_from_env() -> FastPath:
    """uvicorn factory for ``--workers N``: each worker loads $SPENDGATE_CONFIG."""
    log.setup(log_level_from_env())
    config, secrets = load(None)
    return create_app(config, secrets)
