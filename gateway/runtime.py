"""The objects the request path uses, built once from the config at start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from accounting.budgets import Budgets
from accounting.limits import Limiter
from accounting.pricing import Price
from accounting.store.base import Store, WorkflowState
from accounting.store.common import IdSource
from gateway.auth import Authenticator
from gateway.config import (
    FileConfig,
    ModelConfig,
    Secrets,
    context_window_of,
    max_output_of,
    price_of,
)
from gateway.counting import Counter
from gateway.inflight import Cuts
from gateway.provider_gate import ProviderGate
from gateway.providers.base import Provider
from gateway.providers.fasthttp import UpstreamPool
from gateway.providers.kinds import KINDS
from gateway.providers.transport import Transport
from gateway.scrub import Scrubber
from gateway.telemetry import logging as log
from gateway.telemetry import metrics
from gateway.telemetry.tracing import Tracing
from policies.breaker import STATE_CODES, Breaker
from policies.fallback import Route
from policies.retry import RetryBudget, RetrySettings


@dataclass(frozen=True)
class ModelRuntime:
    name: str
    kind: str  # chat | embeddings
    provider: Provider
    upstream_model: str
    price: Price
    max_output_tokens: int
    provider_kind: str = "openai"
    first_token_s: float = 120.0  # headers + first content event (a plain answer: all of it)
    idle_s: float = 60.0  # silence allowed between a stream's later events
    can_continue: bool = False  # continuation: prefill
    context_window: int | None = None  # tokens; None: not known


class WorkflowMemory:
    """What this process last saw left of recent workflows' caps (bounded): only a hint
    for choosing how precisely to estimate a prompt; reserving stays atomic."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self._remaining: dict[tuple[str, str], int] = {}

    def remaining_hint(self, key: str, workflow_id: str, cap: int) -> int:
        return min(cap, self._remaining.get((key, workflow_id), cap))

    def note(self, wf: WorkflowState) -> None:
        if wf.remaining_micros is None:
            return
        if len(self._remaining) >= self.LIMIT:
            self._remaining.clear()
        self._remaining[(wf.key, wf.workflow_id)] = wf.remaining_micros


@dataclass
class Runtime:
    config: FileConfig
    models: dict[str, ModelRuntime]
    routes: dict[str, Route]
    auth: Authenticator
    budgets: Budgets
    store: Store
    labels: metrics.Labels
    pool: UpstreamPool
    limiter: Limiter
    gates: dict[str, ProviderGate] = field(default_factory=dict)  # by provider
    wall: Callable[[], float] = time.time
    tracing: Tracing = field(default_factory=lambda: Tracing(None))
    inflight: metrics.Inflight = field(default_factory=metrics.Inflight)
    request_ids: IdSource = field(default_factory=IdSource)
    seen: WorkflowMemory = field(default_factory=lambda: WorkflowMemory())
    counter: Counter = field(default_factory=Counter)
    cuts: Cuts = field(default_factory=Cuts)

    @property
    def drain_s(self) -> float:
        return self.config.defaults.drain_timeout_s

    settling: set[asyncio.Task[None]] = field(default_factory=set)
    idem_waiters: dict[str, asyncio.Event] = field(default_factory=dict)

    def track(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a settlement that must finish even if its request is cancelled; the
        lifespan waits for these before it closes the store."""
        task = asyncio.ensure_future(work)
        self.settling.add(task)
        task.add_done_callback(self.settling.discard)
        return task


def build_gates(config: FileConfig) -> dict[str, ProviderGate]:
    """One admission gate per provider (``gateway.provider_gate``)."""
    return {
        name: ProviderGate(name, p.max_inflight or p.max_connections, p.queue_timeout_s)
        for name, p in config.providers.items()
    }


def build_providers(
    config: FileConfig, secrets: Secrets, pool: UpstreamPool, gates: dict[str, ProviderGate]
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
    config: FileConfig, gates: dict[str, ProviderGate]
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


def build_routes(
    config: FileConfig, clock: Callable[[], float], gates: dict[str, ProviderGate]
) -> dict[str, Route]:
    listener = _breaker_listener(config, gates)
    budgets = {
        name: RetryBudget(config.defaults.retry_budget_ratio, config.defaults.retry_budget_min)
        for name in config.providers
    }
    routes = {}
    for name, m in config.models.items():
        routes[name] = _route(name, m, config, clock, budgets[m.provider], listener)
        metrics.BREAKER_STATE.labels(name).set(0)
    return routes


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


def build_models(config: FileConfig, providers: dict[str, Provider]) -> dict[str, ModelRuntime]:
    return {name: _model(name, m, config, providers) for name, m in config.models.items()}


def _model(
    name: str, m: ModelConfig, config: FileConfig, providers: dict[str, Provider]
) -> ModelRuntime:
    provider = config.providers[m.provider]
    return ModelRuntime(
        name=name,
        kind=m.kind,
        provider=providers[m.provider],
        upstream_model=m.upstream_model,
        price=price_of(m, provider.kind),
        max_output_tokens=max_output_of(m, config.defaults),
        provider_kind=provider.kind,
        first_token_s=m.first_token_timeout_s or provider.first_token_timeout_s,
        idle_s=m.idle_timeout_s or provider.idle_timeout_s,
        can_continue=m.continuation == "prefill",
        context_window=context_window_of(m, provider.kind),
    )
