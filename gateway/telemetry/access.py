"""What every request leaves behind: its metrics and one access-log line."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from accounting.pricing import micros_to_usd
from gateway.telemetry import logging as log
from gateway.telemetry import metrics, tracing

if TYPE_CHECKING:
    from gateway.context import Ctx
    from gateway.runtime import Runtime


def finish(rt: Runtime, ctx: Ctx, status: int, error_code: str | None = None) -> None:
    elapsed = time.perf_counter() - ctx.start
    model = rt.labels.model(ctx.model)  # the model the caller asked for
    metrics.child(metrics.REQUESTS, model, str(status)).inc()
    metrics.child(metrics.REQUEST_DURATION, model).observe(elapsed)
    metrics.child(metrics.OVERHEAD, model).observe(max(0.0, elapsed - ctx.upstream_s))
    if ctx.ttft_s is not None:
        metrics.child(metrics.TTFT, model).observe(ctx.ttft_s)
    wf = ctx.scope.workflow_id
    _end_span(ctx, status, error_code)
    log.access(
        {
            "request_id": ctx.request_id,
            "trace_id": tracing.trace_id(ctx.span)
            or ctx.upstream_headers.get("traceparent", "")[3:35]
            or None,
            "key": ctx.principal.name,
            "workflow_id": wf,
            "step": ctx.scope.step,
            "endpoint": ctx.endpoint,
            "model": ctx.model,
            "served_model": ctx.served,
            "stream": ctx.stream,
            "status": status,
            "error": error_code,
            "attempts": ctx.attempts,
            "retries": ctx.retries,
            "tokens": ctx.usage.by_kind(),
            "cost_usd": micros_to_usd(ctx.cost_micros),
            "partial": ctx.partial,
            "charge_rules": ctx.rules,
            "skipped": [f"{model}: {why}" for model, why in ctx.skipped] or None,
            "max_tokens_sent": ctx.sent_limit,
            "latency_ms": round(elapsed * 1000, 3),
            "overhead_ms": round(max(0.0, elapsed - ctx.upstream_s) * 1000, 3),
        }
    )


def _end_span(ctx: Ctx, status: int, error_code: str | None) -> None:
    if ctx.span is None:  # tracing is off: nothing reads these
        return
    attributes = {
        "http.response.status_code": status,
        "gen_ai.response.model": ctx.served,
        **tracing.usage_attributes(ctx.usage),
        "spendgate.cost_usd": micros_to_usd(ctx.cost_micros),
        "spendgate.attempts": ctx.attempts,
        "spendgate.retries": ctx.retries,
        "spendgate.fallback": ctx.served is not None and ctx.served != ctx.model,
        "spendgate.workflow_id": ctx.scope.workflow_id,
        "spendgate.key": ctx.principal.name,
        "spendgate.partial": ctx.partial,
        "spendgate.idempotent_replay": error_code == "replayed",
    }
    tracing.end(ctx.span, attributes, error_code if status >= 400 else None)
