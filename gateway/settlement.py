"""Charging attempts: the provider's counts, estimates for what it never reported."""

from __future__ import annotations

import asyncio

from accounting.budgets import Hold
from accounting.meter import final_usage
from accounting.pricing import cost_micros
from accounting.store.base import Charge
from accounting.usage import Usage
from gateway.context import Ctx, StreamAnswer
from gateway.runtime import ModelRuntime, Runtime
from gateway.telemetry import metrics


async def settle_interrupted(
    rt: Runtime, ctx: Ctx, m: ModelRuntime, hold: Hold, reason: str, is_retry: bool
) -> None:
    """Cancelled or timed out mid-call: charge the prompt we sent (an estimate)."""
    try:
        async with asyncio.timeout(5):
            await asyncio.shield(
                settle(rt, ctx, m, hold, Usage(), reason, is_retry, estimate=True, partial=True)
            )
    except TimeoutError:
        return


async def settle(
    rt: Runtime,
    ctx: Ctx,
    m: ModelRuntime,
    hold: Hold,
    usage: Usage,
    reason: str,
    is_retry: bool,
    *,
    sent: bool = True,
    estimate: bool = False,
    partial: bool = False,
    text: str = "",
) -> None:
    """Charge one attempt: the provider's counts, and with ``estimate`` the tokenizer's
    count of whatever the provider did not report."""
    if estimate and not usage.complete:
        usage, estimated = await asyncio.to_thread(
            final_usage, usage, text, m.upstream_model, lambda: ctx.prompt_tokens(m)
        )
        partial = partial or estimated
    cost = cost_micros(m.price, usage)
    ctx.cost_micros += cost
    ctx.usage = _add(ctx.usage, usage)
    ctx.partial = ctx.partial or partial
    _count_spend(rt, ctx, m, usage, cost)
    charge = Charge(
        cost_micros=cost,
        tokens=usage.by_kind(),
        model=m.name,
        request_id=ctx.request_id,
        sent=sent,
        partial=partial,
        is_retry=is_retry,
        is_fallback=reason != "primary",
    )
    workflow = await rt.budgets.settle(hold, charge)
    if workflow is not None:
        ctx.workflow = workflow
        rt.note_remaining(workflow.key, workflow.workflow_id, workflow.remaining_micros)


def _count_spend(rt: Runtime, ctx: Ctx, m: ModelRuntime, usage: Usage, cost: int) -> None:
    for kind, count in usage.by_kind().items():
        if count:
            metrics.child(metrics.TOKENS, m.name, kind).inc(count)
    if cost:
        metrics.child(metrics.COST, m.name, rt.labels.key(ctx.principal.name)).inc(cost / 1_000_000)


def _add(a: Usage, b: Usage) -> Usage:
    def plus(x: int | None, y: int | None) -> int | None:
        return None if x is None and y is None else (x or 0) + (y or 0)

    return Usage(
        plus(a.input_tokens, b.input_tokens),
        plus(a.output_tokens, b.output_tokens),
        plus(a.cached_input_tokens, b.cached_input_tokens),
        plus(a.partial_output_tokens, b.partial_output_tokens),
    )


async def settle_stream(rt: Runtime, ctx: Ctx, answer: StreamAnswer, *, cut: str | None) -> None:
    """After a stream ended (cleanly or not): charge what it really consumed."""
    state = answer.stream.state
    for kind in state.anomalies:
        metrics.STREAM_ANOMALIES.labels(answer.model.name, kind).inc()
    if cut is not None:
        metrics.PARTIAL_STREAMS.labels(answer.model.name, cut).inc()
    complete = state.usage.complete
    await settle(
        rt,
        ctx,
        answer.model,
        answer.hold,
        state.usage,
        answer.step_reason,
        answer.is_retry,
        estimate=True,
        partial=cut is not None,
        text="" if complete else state.received_text(),
    )
