"""The composition root's builders: every object the request path uses, made once from
the config (``gateway.app`` wires them into the ASGI application).

The config is read here and nowhere on the request path: each configured model becomes
one ``ModelRuntime`` holding its provider, price, limits, breaker, retry settings,
fallbacks and its provider's admission gate; the few config sections requests read are
handed over as ``Rules``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from opentelemetry.sdk.trace import TracerProvider

from accounting.budgets import Budgets
from accounting.store import open_store
from accounting.store.base import Store
from gateway import lifecycle
from gateway.auth import Authenticator
from gateway.config import (
    FileConfig,
    ModelConfig,
    Secrets,
    context_window_of,
    max_output_of,
    price_of,
    upstream_routes,
)
from gateway.provider_gate import ProviderGate
from gateway.providers.base import Provider
from gateway.providers.fasthttp import UpstreamPool
from gateway.providers.kinds import KINDS
from gateway.providers.seam import ClientSettings
from gateway.providers.transport import Transport, open_client
from gateway.runtime import ModelRuntime, Rules, Runtime
from gateway.scrub import Scrubber
from gateway.store_guard import ObservedStore
from gateway.telemetry import logging as log
from gateway.telemetry import metrics
from gateway.telemetry.tracing import Tracing, provider_from_env
from policies.breaker import STATE_CODES, Breaker
from policies.fallback import Route
from policies.retry import RetryBudget, RetrySettings


def runtime(
    config: FileConfig,
    secrets: Secrets,
    *,
    clock: Callable[[], float],
    wall: Callable[[], float],
    store: Store | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Runtime:
    """The request path's objects for ``config``; ``clock`` drives breakers, ``wall``
    leases and expiry."""
    pool = upstream_pool(config)
    the_store = ObservedStore(store or open_store(config.store))
    return Runtime(
        rules=rules(config),
        models=models(config, secrets, pool, clock),
        auth=Authenticator(secrets.gateway_keys, secrets.admin_key, secrets.metrics_key),
        budgets=Budgets(the_store, wall, lifecycle.settle_hooks()),
        store=the_store,
        labels=metrics.Labels(config.models, [k.name for k in config.auth.keys]),
        pool=pool,
        limiter=the_store.limiter(),
        wall=wall,
        tracing=Tracing(tracer_provider or provider_from_env()),
    )


def rules(config: FileConfig) -> Rules:
    return Rules(
        defaults=config.defaults,
        budgets=config.budgets,
        workflows=config.workflows,
        idempotency=config.idempotency,
        store_scheme=config.store.split(":", 1)[0],
    )


def upstream_pool(config: FileConfig) -> UpstreamPool:
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


def models(
    config: FileConfig, secrets: Secrets, pool: UpstreamPool, clock: Callable[[], float]
) -> dict[str, ModelRuntime]:
    """One ``ModelRuntime`` per configured model; models on one provider share its
    provider object, admission gate and retry budget."""
    gates = {
        name: ProviderGate(name, p.max_inflight or p.max_connections, p.queue_timeout_s)
        for name, p in config.providers.items()
    }
    providers = _providers(config, secrets, pool, gates)
    budgets = {
        name: RetryBudget(config.defaults.retry_budget_ratio, config.defaults.retry_budget_min)
        for name in config.providers
    }
    listener = _breaker_listener(config, gates)
    built = {}
    for name, m in config.models.items():
        route = _route(name, m, config, clock, budgets[m.provider], listener)
        built[name] = _model(name, m, config, providers[m.provider], route, gates[m.provider])
        metrics.BREAKER_STATE.labels(name).set(0)
    return built


def _providers(
    config: FileConfig, secrets: Secrets, pool: UpstreamPool, gates: Mapping[str, ProviderGate]
) -> dict[str, Provider]:
    providers: dict[str, Provider] = {}
    scrubber = Scrubber(secrets.every_secret())
    for name, p in config.providers.items():
        transport = Transport(
            pool[name],
            name,
            idle_timeout_s=p.idle_timeout_s,
            first_token_timeout_s=p.first_token_timeout_s,
            max_event_bytes=p.max_event_bytes,
            scrubber=scrubber,
            on_answer=gates[name].observe,
        )
        providers[name] = KINDS[p.kind](name, p, secrets.provider_keys[name], transport)
    return providers


def _breaker_listener(
    config: FileConfig, gates: Mapping[str, ProviderGate]
) -> Callable[[str, str, str], None]:
    def on_change(model: str, old: str, new: str) -> None:
        _on_breaker_change(model, old, new)
        if new == "closed" and old != "closed":  # recovered: no stampede
            gates[config.models[model].provider].slow_start()

    return on_change


def _on_breaker_change(model: str, old: str, new: str) -> None:
    metrics.BREAKER_STATE.labels(model).set(STATE_CODES.get(new, 0))
    metrics.BREAKER_TRANSITIONS.labels(model, new).inc()
    log.event("breaker_state_change", model=model, from_state=old, to_state=new)


def _route(
    name: str,
    m: ModelConfig,
    config: FileConfig,
    clock: Callable[[], float],
    budget: RetryBudget,
    listener: Callable[[str, str, str], None],
) -> Route:
    retry = m.retry or config.defaults.retry
    breaker = m.breaker or config.defaults.breaker
    return Route(
        model=name,
        retry=RetrySettings(
            retry.max_attempts,
            retry.initial_backoff_s,
            retry.max_backoff_s,
            retry.max_retry_after_s,
        ),
        breaker=Breaker(name, breaker.fail_max, breaker.reset_timeout_s, clock, listener),
        budget=budget,
        fallbacks=m.fallbacks,
        context_window_fallbacks=m.context_window_fallbacks,
    )


def _model(
    name: str,
    m: ModelConfig,
    config: FileConfig,
    provider: Provider,
    route: Route,
    gate: ProviderGate,
) -> ModelRuntime:
    p = config.providers[m.provider]
    return ModelRuntime(
        name=name,
        kind=m.kind,
        provider=provider,
        upstream_model=m.upstream_model,
        price=price_of(m, p.kind),
        max_output_tokens=max_output_of(m, config.defaults),
        route=route,
        gate=gate,
        provider_kind=p.kind,
        first_token_s=m.first_token_timeout_s or p.first_token_timeout_s,
        idle_s=m.idle_timeout_s or p.idle_timeout_s,
        can_continue=m.continuation == "prefill",
        context_window=context_window_of(m, p.kind),
    )
