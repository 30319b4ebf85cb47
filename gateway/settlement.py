"""Charging attempts: one rule per outcome, always on the safe side of what was billed.

- ``reported``: the provider's final usage arrived; its counts.
- ``estimated``: a whole answer arrived without usage; prompt and answer, tokenized.
- ``received``: a stream stopped early (it broke, or we closed it; a streaming
  provider stops generating when its stream is closed): the prompt (the provider's
  count when it gave one, else the tokenizer's upper bound) plus the tokens that
  arrived, never less than a provisional count the provider sent; when we closed it
  while it still generated, plus ``budgets.cut_stream_allowance_tokens`` for what was
  generated but still on its way.
- ``drained``: a plain answer abandoned at the deadline and read to its end in the
  background (``gateway.drain``); what it reports.
- ``worst_case``: nothing can be known (a plain answer lost after the request was
  sent, a drain that failed, a shutdown cancel): the hold, prompt bound + output limit.
- ``refused``: the provider answered an error status: what its body reports, usually
  nothing (providers do not bill rejected requests).
- ``not_sent``: nothing reached the provider (a connect failure): nothing, not a call.

Every rule but ``not_sent`` counts the attempt as a call; ``received`` and
``worst_case`` mark it partial (part of the charge is not the provider's word, and
the answer did not arrive whole).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from accounting.meter import bounded_usage, final_usage
from accounting.pricing import cost_micros, worst_case_micros
from accounting.store.base import Charge
from accounting.usage import Usage
from gateway.context import Attempt, Ctx
from gateway.guardrails import check_anomaly
from gateway.providers.base import Completed, StreamState
from gateway.runtime import Runtime
from gateway.telemetry import metrics
from policies.errors import UpstreamError

PARTIAL_RULES = frozenset({"received", "worst_case"})
# An attempt the provider answered in full: its place lets the slow start grow.
ANSWERED_RULES = frozenset({"reported", "estimated", "drained"})


async def settle_answer(rt: Runtime, ctx: Ctx, at: Attempt, done: Completed, rule: str) -> None:
    """A whole answer arrived (``rule`` reported or drained)."""
    usage = done.usage
    if not usage.complete:
        usage = await _metered(rt, ctx, at, usage, done.text)
        rule = "estimated" if rule == "reported" else rule
    await charge(rt, ctx, at, usage, rule)


async def settle_error(rt: Runtime, ctx: Ctx, at: Attempt, exc: UpstreamError) -> None:
    """The attempt failed with ``exc``: an error answer, nothing sent, a broken stream,
    or a plain answer lost after the request was sent."""
    if exc.status is not None:
        await charge(rt, ctx, at, exc.usage or Usage(), "refused")
    elif not exc.reached:
        await charge(rt, ctx, at, Usage(), "not_sent", sent=False)
    elif ctx.stream:
        await settle_received(rt, ctx, at)
    else:
        await settle_worst(rt, ctx, at)


async def settle_received(rt: Runtime, ctx: Ctx, at: Attempt) -> Usage:
    """A stream that stopped (cleanly or not): what it reported, else what arrived.
    Returns the usage charged."""
    state = at.stream.state if at.stream is not None else StreamState()
    if state.usage_final and state.usage.complete:
        await charge(rt, ctx, at, state.usage, "reported")
        return state.usage
    # A stream that finished properly but reported no usage is whole: only estimated.
    rule = "estimated" if state.done else "received"
    usage = await _metered(
        rt,
        ctx,
        at,
        state.usage,
        state.received_text(),
        final=state.usage_final,
        extra=state.overflow_bytes,
    )
    if not (state.done or state.ended_by_upstream):  # we cut it while it generated
        allowance = rt.rules.budgets.cut_stream_allowance_tokens
        usage = replace(usage, partial_output_tokens=(usage.partial_output_tokens or 0) + allowance)
    await charge(rt, ctx, at, usage, rule)
    return usage


async def _metered(
    rt: Runtime,
    ctx: Ctx,
    at: Attempt,
    usage: Usage,
    text: str,
    *,
    final: bool = True,
    extra: int = 0,
) -> Usage:
    """``usage`` completed by the tokenizer on the counting pool; by byte bounds when
    the pool is saturated (never less than the truth, only less precise)."""
    model = at.model.upstream_model

    def count() -> Usage:
        prompt = lambda: ctx.prompt_upper(at.model)  # noqa: E731
        return final_usage(usage, text, model, prompt, final=final, extra_tokens=extra)[0]

    counted = await rt.counter.run(count)
    if counted is not None:
        return counted
    received = len(text.encode("utf-8", "surrogatepass")) + extra
    return bounded_usage(usage, received, ctx.prompt_bound(), final=final)


async def settle_worst(rt: Runtime, ctx: Ctx, at: Attempt) -> None:
    """Nothing can be known of what the provider billed: charge the hold's worst case."""
    prompt = at.prompt_tokens if at.prompt_tokens >= 0 else ctx.prompt_upper(at.model)
    usage = Usage(input_tokens=prompt, output_tokens=None, partial_output_tokens=at.output_tokens)
    await charge(rt, ctx, at, usage, "worst_case")


async def charge(
    rt: Runtime, ctx: Ctx, at: Attempt, usage: Usage, rule: str, *, sent: bool = True
) -> None:
    """Settle ``at`` once with ``usage`` under ``rule`` and record the spend."""
    at.slot.release(ok=rule in ANSWERED_RULES)
    if at.settled:
        return
    m = at.model
    if rule == "worst_case":
        prompt = usage.input_tokens or 0
        worst = worst_case_micros(m.price, prompt, at.output_tokens, caching=ctx.caching)
        cost = max(at.hold.amount_micros, worst)
    else:
        cost = cost_micros(m.price, usage)
    partial = rule in PARTIAL_RULES
    ctx.cost_micros += cost
    ctx.usage = ctx.usage.add(usage)
    ctx.partial = ctx.partial or partial
    ctx.rules.append(rule)
    _count_spend(rt, ctx, at, usage, cost, rule)
    record = Charge(
        cost_micros=cost,
        tokens=usage.by_kind(),
        model=m.name,
        request_id=ctx.request_id,
        sent=sent,
        partial=partial,
        is_retry=at.is_retry,
        is_fallback=at.reason in ("fallback", "context_window"),
        rule=rule,
    )
    if at in ctx.attempts_open:
        ctx.attempts_open.remove(at)
    workflow = await asyncio.shield(rt.budgets.settle(at.hold, record))
    if workflow is not None:
        ctx.workflow = workflow
        rt.seen.note(workflow)
        await check_anomaly(rt, workflow)


async def settle_leftovers(rt: Runtime, ctx: Ctx) -> None:
    """Whatever attempt is still open when the request ends (a cancellation between
    reserve and settle) is charged by the safe rule for its kind."""
    for at in list(ctx.attempts_open):
        if at.draining:  # the drain settles it when the answer is read
            continue
        if at.stream is not None or ctx.stream:
            await settle_received(rt, ctx, at)
        else:
            await settle_worst(rt, ctx, at)


def _count_spend(rt: Runtime, ctx: Ctx, at: Attempt, usage: Usage, cost: int, rule: str) -> None:
    model = at.model.name
    for kind, count in usage.by_kind().items():
        if count:
            metrics.child(metrics.TOKENS, model, kind).inc(count)
    if cost:
        key = rt.labels.key(ctx.principal.name)
        metrics.child(metrics.COST, model, key).inc(cost / 1_000_000)
    metrics.child(metrics.CHARGES, model, rule).inc()
