"""The objects the request path uses: plain data, built once by the composition root
(``gateway.compose``) from the config. Nothing here reads the config file: each part of
the request path finds the settings it needs in these objects (``Rules``, and one
``ModelRuntime`` per configured model)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from accounting.budgets import Budgets
from accounting.limits import Limiter
from accounting.pricing import Price
from accounting.store.base import Store, WorkflowState
from accounting.store.common import IdSource
from gateway.auth import Authenticator
from gateway.config_schema import BudgetsConfig, DefaultsConfig, IdempotencyConfig, WorkflowsConfig
from gateway.counting import Counter
from gateway.inflight import Cuts
from gateway.provider_gate import ProviderGate
from gateway.providers.base import Provider
from gateway.providers.fasthttp import UpstreamPool
from gateway.telemetry import metrics
from gateway.telemetry.tracing import Tracing
from policies.fallback import Route


@dataclass(frozen=True)
class ModelRuntime:
    """One configured model, everything serving it needs: its provider (and that
    provider's admission gate), price, limits, and its route (retry settings, breaker,
    fallbacks)."""

    name: str
    kind: str  # chat | embeddings
    provider: Provider
    upstream_model: str
    price: Price
    max_output_tokens: int
    route: Route
    gate: ProviderGate
    provider_kind: str = "openai"
    first_token_s: float = 120.0  # headers + first content event (a plain answer: all of it)
    idle_s: float = 60.0  # silence allowed between a stream's later events
    can_continue: bool = False  # continuation: prefill
    context_window: int | None = None  # tokens; None: not known


@dataclass(frozen=True)
class Rules:
    """The config sections the request path reads (the rest is used up at start)."""

    defaults: DefaultsConfig
    budgets: BudgetsConfig
    workflows: WorkflowsConfig
    idempotency: IdempotencyConfig
    store_scheme: str


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
    rules: Rules
    models: Mapping[str, ModelRuntime]
    auth: Authenticator
    budgets: Budgets
    store: Store
    labels: metrics.Labels
    pool: UpstreamPool
    limiter: Limiter
    wall: Callable[[], float] = time.time
    tracing: Tracing = field(default_factory=lambda: Tracing(None))
    inflight: metrics.Inflight = field(default_factory=metrics.Inflight)
    request_ids: IdSource = field(default_factory=IdSource)
    seen: WorkflowMemory = field(default_factory=lambda: WorkflowMemory())
    counter: Counter = field(default_factory=Counter)
    cuts: Cuts = field(default_factory=Cuts)
    settling: set[asyncio.Task[None]] = field(default_factory=set)
    idem_waiters: dict[str, asyncio.Event] = field(default_factory=dict)

    @property
    def drain_s(self) -> float:
        return self.rules.defaults.drain_timeout_s

    def route(self, model: str) -> Route:
        return self.models[model].route

    def track(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a settlement that must finish even if its request is cancelled; the
        lifespan waits for these before it closes the store."""
        task = asyncio.ensure_future(work)
        self.settling.add(task)
        task.add_done_callback(self.settling.discard)
        return task
