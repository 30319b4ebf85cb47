"""Every metric spendgate exports, defined once.

Labels come only from bounded sets: configured model names (anything else is
``other``), configured key names, and fixed enumerations. Never a workflow id,
request id, idempotency key, user text or secret.

With ``--workers N`` the metrics use prometheus-client's multiprocess mode: the CLI
points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start and
``/metrics`` aggregates every worker's files.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
COST_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100)

_MP = "PROMETHEUS_MULTIPROC_DIR" in os.environ


def _gauge(name: str, doc: str, labels: Iterable[str] = (), mode: str = "livesum") -> Gauge:
    kwargs = {"multiprocess_mode": mode} if _MP else {}
    return Gauge(name, doc, list(labels), **kwargs)  # type: ignore[arg-type]


REQUESTS = Counter("spendgate_requests_total", "Requests answered", ["model", "status"])
REQUEST_DURATION = Histogram(
    "spendgate_request_duration_seconds",
    "Request duration, end to end",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
TTFT = Histogram(
    "spendgate_time_to_first_token_seconds",
    "Time to the first streamed event",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
OVERHEAD = Histogram(
    "spendgate_gateway_overhead_seconds",
    "Time spent in the gateway itself, not upstream",
    ["model"],
    buckets=OVERHEAD_BUCKETS,
)
UPSTREAM_ATTEMPTS = Counter(
    "spendgate_upstream_attempts_total", "Upstream attempts by outcome", ["model", "outcome"]
)
RETRIES = Counter("spendgate_retries_total", "Retries by reason", ["model", "reason"])
RETRY_BUDGET_EXHAUSTED = Counter(
    "spendgate_retry_budget_exhausted_total", "Retries refused by the retry budget", ["model"]
)
FALLBACKS = Counter(
    "spendgate_fallbacks_total", "Moves to a fallback model", ["from_model", "to_model", "reason"]
)
BREAKER_STATE = _gauge(
    "spendgate_breaker_state", "0 closed, 1 half-open, 2 open", ["model"], mode="max"
)
BREAKER_TRANSITIONS = Counter(
    "spendgate_breaker_transitions_total", "Breaker state changes", ["model", "to_state"]
)
TOKENS = Counter("spendgate_tokens_total", "Tokens accounted", ["model", "kind"])
COST = Counter("spendgate_cost_usd_total", "Spend in USD", ["model", "key"])
BUDGET_REJECTIONS = Counter(
    "spendgate_budget_rejections_total", "Requests refused by a budget", ["scope"]
)
REPLAYS = Counter(
    "spendgate_idempotent_replays_total",
    "Answers replayed from the idempotency store",
    ["model"],
)
WORKFLOW_COST = Histogram(
    "spendgate_workflow_cost_usd",
    "Cost of completed workflows, by kind (X-Workflow-Name in workflows.names, else other)",
    ["workflow"],
    buckets=COST_BUCKETS,
)
GUARDRAIL_REJECTIONS = Counter(
    "spendgate_guardrail_rejections_total",
    "Requests refused (or workflows stopped) by a workflow guardrail",
    ["reason"],
)
WORKFLOWS_CANCELLED = Counter(
    "spendgate_workflow_cancels_total", "Workflows cancelled (the kill switch), by who", ["by"]
)
WORKFLOWS_STALLED = _gauge(
    "spendgate_workflows_stalled", "Running workflows without a recent request", mode="max"
)
INFLIGHT = _gauge("spendgate_inflight_requests", "Requests in flight", ["model"])
OLDEST_INFLIGHT = _gauge(
    "spendgate_oldest_inflight_seconds",
    "Age of the oldest in-flight upstream call",
    ["model"],
    mode="max",
)
RESERVED = _gauge("spendgate_reserved_usd", "Budget held by this gateway's in-flight calls")
PARTIAL_STREAMS = Counter(
    "spendgate_partial_streams_total", "Streams cut off and charged in part", ["model", "reason"]
)
STREAM_ANOMALIES = Counter(
    "spendgate_stream_anomalies_total", "Upstream stream anomalies", ["model", "kind"]
)
STORE_ERRORS = Counter(
    "spendgate_store_errors_total", "Store operations that failed", ["operation"]
)
CHARGES = Counter(
    "spendgate_charges_total",
    "Upstream attempts charged, by the rule that priced them",
    ["model", "rule"],
)
SETTLES_PENDING = _gauge(
    "spendgate_settles_pending", "Settlements waiting for the store to come back"
)
SETTLE_ORPHANS = Counter(
    "spendgate_settle_orphans_total",
    "Settlements whose hold the store had lost (charged anyway)",
)
STREAM_CONTINUATIONS = Counter(
    "spendgate_stream_continuations_total",
    "Broken streams and what became of them: continued, not_continuable, unavailable",
    ["model", "outcome"],
)
STORE_RESET = _gauge(
    "spendgate_store_reset", "1 while the store is in the reset state (lost data)", mode="max"
)
RATE_LIMITED = Counter(
    "spendgate_rate_limited_total",
    "Requests refused because their key is over one of its own limits",
    ["key", "limit"],
)
PROVIDER_QUEUE_DEPTH = _gauge(
    "spendgate_provider_queue_depth", "Calls waiting for a provider's concurrency", ["provider"]
)
PROVIDER_QUEUE_WAIT = Histogram(
    "spendgate_provider_queue_wait_seconds",
    "Time a call waited for its provider's concurrency, pacing or slow start",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_PACED = Counter(
    "spendgate_provider_paced_total",
    "Times calls were held back because the provider's own quota headers said it was spent",
    ["provider"],
)

ALL = (
    REQUESTS,
    REQUEST_DURATION,
    TTFT,
    OVERHEAD,
    UPSTREAM_ATTEMPTS,
    RETRIES,
    RETRY_BUDGET_EXHAUSTED,
    FALLBACKS,
    BREAKER_STATE,
    BREAKER_TRANSITIONS,
    TOKENS,
    COST,
    BUDGET_REJECTIONS,
    REPLAYS,
    WORKFLOW_COST,
    GUARDRAIL_REJECTIONS,
    WORKFLOWS_CANCELLED,
    WORKFLOWS_STALLED,
    INFLIGHT,
    OLDEST_INFLIGHT,
    RESERVED,
    PARTIAL_STREAMS,
    STREAM_ANOMALIES,
    STORE_ERRORS,
    CHARGES,
    SETTLES_PENDING,
    SETTLE_ORPHANS,
    STORE_RESET,
    STREAM_CONTINUATIONS,
    RATE_LIMITED,
    PROVIDER_QUEUE_DEPTH,
    PROVIDER_QUEUE_WAIT,
    PROVIDER_PACED,
)


@functools.lru_cache(maxsize=8192)
def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, kept: label sets are bounded and the lookups are on
    every request's path."""
    return metric.labels(*labels)


def metric_names() -> set[str]:
    """Base names of every metric (counters with their ``_total`` suffix)."""
    names = set()
    for metric in ALL:
        name = metric._name
        names.add(name + "_total" if isinstance(metric, Counter) else name)
    return names


class Labels:
    """Bounded label values: a model or key outside the config reads ``other``."""

    def __init__(self, models: Iterable[str], keys: Iterable[str]) -> None:
        self._models = frozenset(models)
        self._keys = frozenset(keys)

    def model(self, name: str | None) -> str:
        return name if name in self._models else "other"

    def key(self, name: str | None) -> str:
        return name if name in self._keys else "other"


def exposition() -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY

    if _MP:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class Inflight:
    """Requests in flight per model, so the age of the oldest can be exported."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._since: dict[str, dict[str, float]] = {}

    def start(self, model: str, request_id: str) -> None:
        self._since.setdefault(model, {})[request_id] = self._clock()
        child(INFLIGHT, model).inc()

    def stop(self, model: str, request_id: str) -> None:
        if self._since.get(model, {}).pop(request_id, None) is not None:
            child(INFLIGHT, model).dec()

    def export(self) -> None:
        now = self._clock()
        for model, started in self._since.items():
            OLDEST_INFLIGHT.labels(model).set(now - min(started.values(), default=now))
