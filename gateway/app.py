"""The composition root: builds and wires every object; the lifespan opens and closes
the HTTP pool and the store."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from accounting.budgets import Budgets
from accounting.store import open_store
from accounting.store.base import Store
from gateway import admin, admin_workflows, lifecycle, routes, routes_apis, server, workflows
from gateway.auth import Authenticator
from gateway.config import FileConfig, Secrets, load, log_level_from_env, upstream_routes
from gateway.providers.fasthttp import UpstreamPool
from gateway.providers.seam import ClientSettings
from gateway.providers.transport import open_client
from gateway.runtime import Runtime, build_gates, build_models, build_providers, build_routes
from gateway.store_guard import ObservedStore
from gateway.telemetry import logging as log
from gateway.telemetry import metrics
from gateway.telemetry.tracing import Tracing, provider_from_env


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
    pool = _upstream_pool(config)
    gates = build_gates(config)
    providers = build_providers(config, secrets, pool, gates)
    the_store = ObservedStore(store or open_store(config.store))
    auth = Authenticator(secrets.gateway_keys, secrets.admin_key, secrets.metrics_key)
    rt = Runtime(
        config=config,
        models=build_models(config, providers),
        routes=build_routes(config, clock, gates),
        auth=auth,
        budgets=Budgets(the_store, wall, lifecycle.settle_hooks()),
        store=the_store,
        labels=metrics.Labels(config.models, [k.name for k in config.auth.keys]),
        pool=pool,
        limiter=the_store.limiter(),
        gates=gates,
        wall=wall,
        tracing=Tracing(tracer_provider or provider_from_env()),
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.HOT.get(scope["path"])
            if handler is not None:
                scope["app"] = self
                response = await handler(Request(scope, receive))
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


def _upstream_pool(config: FileConfig) -> UpstreamPool:
    """One upstream client per provider (its own connection limit and TLS context), on
    the transport the config resolves for it (the lean pool, or httpx via a proxy)."""
    clients = {}
    for name, route in upstream_routes(config).items():
        p = config.providers[name]
        settings = ClientSettings(
            max_connections=p.max_connections,
            connect_timeout_s=p.connect_timeout_s,
            pool_timeout_s=p.connect_timeout_s,
            keepalive_expiry_s=p.keepalive_expiry_s,
            max_response_header_bytes=p.max_response_header_bytes,
            max_response_bytes=p.max_response_bytes,
        )
        clients[name] = open_client(
            route.transport, settings, base_url=p.base_url, proxy=route.proxy, ca_file=p.ca_file
        )
        log.event(
            "upstream_transport", provider=name, transport=route.transport, proxy=route.proxy_shown
        )
    return UpstreamPool(clients)


def app_from_env() -> FastPath:
    """uvicorn factory for ``--workers N``: each worker loads $SPENDGATE_CONFIG."""
    log.setup(log_level_from_env())
    config, secrets = load(None)
    return create_app(config, secrets)
