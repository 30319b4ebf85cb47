"""The request path, one short async function per step, in the order it runs:

routes       parse JSON (400), auth (401/403/404), headers (400)
guard        idempotency: replay | claim | conflict (422) | wait for the holder
fallback     for each candidate: breaker open -> next
  retry      transient errors only; Retry-After or jittered backoff; within the deadline
    attempt  reserve the worst case (402) -> provider.send -> settle the truth
relay        a stream is committed at its first event; no failover after that
finish       metrics, access log, response headers
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from accounting.budgets import Hold
from accounting.errors import BudgetExceeded
from accounting.pricing import worst_case_micros
from accounting.usage import Usage
from gateway.context import Answer, Ctx, StreamAnswer
from gateway.providers.base import UpstreamCall, UpstreamStream
from gateway.providers.classify import stream_broken
from gateway.runtime import ModelRuntime, Runtime
from gateway.settlement import settle, settle_interrupted
from gateway.telemetry import logging as log
from gateway.telemetry import metrics, tracing
from policies import fallback
from policies.deadline import Deadline
from policies.errors import UpstreamError
from policies.fallback import Step
from policies.retry import RetryHooks

LEASE_MARGIN_S = 60.0
NEAR_CAP = 10  # a bound above a tenth of what is left is counted exactly
COMMIT_LOOKAHEAD = 8


async def run(rt: Runtime, ctx: Ctx) -> Answer | StreamAnswer:
    """Route the request through fallbacks and retries; return the committed answer."""
    hooks = RetryHooks(
        on_retry=lambda exc, _wait: _on_retry(rt, ctx, exc),
        on_budget_exhausted=lambda: metrics.RETRY_BUDGET_EXHAUSTED.labels(
            rt.labels.model(ctx.served or ctx.model)
        ).inc(),
    )

    async def attempt(step: Step) -> Answer | StreamAnswer:
        return await _attempt(rt, ctx, step)

    async with asyncio.timeout_at(_loop_deadline(ctx.deadline)):
        return await fallback.run(
            ctx.model,
            rt.routes,
            attempt,
            ctx.deadline,
            hooks,
            sdk_retrying=ctx.sdk_retrying,
            on_fallback=lambda a, b, why: _on_fallback(ctx, a, b, why),
        )


def _loop_deadline(deadline: Deadline) -> float:
    return asyncio.get_running_loop().time() + deadline.remaining()


def _on_retry(rt: Runtime, ctx: Ctx, exc: UpstreamError) -> None:
    ctx.retries += 1
    ctx.retry_reason = exc.kind
    metrics.RETRIES.labels(rt.labels.model(ctx.served or ctx.model), exc.kind).inc()


def _on_fallback(ctx: Ctx, from_model: str, to_model: str, reason: str) -> None:
    metrics.FALLBACKS.labels(from_model, to_model, reason).inc()
    log.event(
        "fallback",
        request_id=ctx.request_id,
        from_model=from_model,
        to_model=to_model,
        reason=reason,
    )


async def _reserve(rt: Runtime, ctx: Ctx, m: ModelRuntime) -> Hold:
    """Hold the attempt's worst case. The prompt is bounded by the body's size (no
    tokenizing) when that bound is small next to what the budget has left; near a cap,
    or when the bound does not fit, it is counted exactly, so a loose bound never
    turns away a request the budget could pay for."""
    if not ctx.scope.enforced:
        return await rt.budgets.reserve(ctx.scope, 0, 0, 0.0)
    bound = ctx.prompt_bound()
    if not _near_cap(rt, ctx, m, bound):
        try:
            return await _hold(rt, ctx, m, bound)
        except BudgetExceeded:
            pass
    exact = await asyncio.to_thread(ctx.prompt_tokens, m)
    return await _hold(rt, ctx, m, min(exact, bound))


def _near_cap(rt: Runtime, ctx: Ctx, m: ModelRuntime, prompt: int) -> bool:
    scope = ctx.scope
    out = ctx.max_output(m)
    if scope.cap_tokens is not None and (prompt + out) * NEAR_CAP > scope.cap_tokens:
        return True
    if scope.cap_micros is None or scope.workflow_id is None:
        return False
    left = rt.remaining_hint(scope.key, scope.workflow_id, scope.cap_micros)
    return worst_case_micros(m.price, prompt, out) * NEAR_CAP > left


async def _hold(rt: Runtime, ctx: Ctx, m: ModelRuntime, prompt: int) -> Hold:
    out = ctx.max_output(m)
    worst = worst_case_micros(m.price, prompt, out)
    lease = max(ctx.deadline.remaining(), 0.0) + LEASE_MARGIN_S
    hold = await rt.budgets.reserve(ctx.scope, worst, prompt + out, lease)
    ctx.workflow = hold.workflow or ctx.workflow
    return hold


async def _attempt(rt: Runtime, ctx: Ctx, step: Step) -> Answer | StreamAnswer:
    m = rt.models[step.model]
    ctx.served = m.name
    ctx.attempts += 1
    hold = await _reserve(rt, ctx, m)
    span = rt.tracing.start_attempt(ctx.span, _attempt_attributes(rt, ctx, m, step))
    call = UpstreamCall(
        endpoint=ctx.endpoint,
        body=ctx.body,
        upstream_model=m.upstream_model,
        stream=ctx.stream,
        headers=tracing.inject(span, ctx.upstream_headers),
        deadline=ctx.deadline.at,
        max_output_tokens=m.max_output_tokens,
    )
    is_retry = step.attempt > 1
    started = time.perf_counter()
    try:
        if ctx.stream:
            answer = await _open_stream(rt, ctx, m, call, hold, step.reason, is_retry)
            tracing.end(span, {"spendgate.outcome": "success"})
            return answer
        done = await m.provider.complete(call)
    except UpstreamError as exc:
        _count_attempt(rt, m, exc.kind)
        tracing.end(
            span,
            {"spendgate.outcome": exc.kind, "http.response.status_code": exc.status},
            exc.message,
        )
        usage = exc.usage or Usage()
        await settle(rt, ctx, m, hold, usage, step.reason, is_retry, sent=exc.status is not None)
        raise
    except BaseException as exc:
        tracing.end(span, {"spendgate.outcome": "interrupted"}, type(exc).__name__)
        await settle_interrupted(rt, ctx, m, hold, step.reason, is_retry)
        raise
    finally:
        ctx.upstream_s += time.perf_counter() - started
    _count_attempt(rt, m, "success")
    tracing.end(span, {"spendgate.outcome": "success", **tracing.usage_attributes(done.usage)})
    await settle(rt, ctx, m, hold, done.usage, step.reason, is_retry, estimate=True, text=done.text)
    return Answer(done.status, done.headers, done.body)


def _attempt_attributes(rt: Runtime, ctx: Ctx, m: ModelRuntime, step: Step) -> dict[str, Any]:
    if not rt.tracing.enabled:
        return {}
    return {
        "gen_ai.operation.name": ctx.endpoint,
        "gen_ai.system": m.provider_kind,
        "gen_ai.request.model": m.upstream_model,
        "spendgate.model": m.name,
        "spendgate.attempt": step.attempt,
        "spendgate.fallback": step.reason != "primary",
        "spendgate.fallback_reason": step.reason,
        "spendgate.retry_reason": ctx.retry_reason if step.attempt > 1 else None,
        "spendgate.breaker_state": rt.routes[m.name].breaker.state,
    }


async def _open_stream(
    rt: Runtime,
    ctx: Ctx,
    m: ModelRuntime,
    call: UpstreamCall,
    hold: Hold,
    reason: str,
    is_retry: bool,
) -> StreamAnswer:
    stream = await m.provider.stream(call)
    chunks = aiter(stream)
    try:
        first = await _until_content(stream, chunks)
    except StopAsyncIteration:
        await stream.aclose()
        raise stream_broken(m.provider.name, "ended before its first event") from None
    except BaseException:
        await stream.aclose()
        raise
    ctx.ttft_s = time.perf_counter() - ctx.start
    _count_attempt(rt, m, "success")
    return StreamAnswer(stream, chunks, first, hold, m, reason, is_retry)


async def _until_content(stream: UpstreamStream, chunks: AsyncIterator[bytes]) -> bytes:
    """Events up to the first that carries content: the commit point.

    Events before it (the role chunk, pings) carry nothing a second model could
    contradict, so holding them back lets a failure right after them still fail over.
    """
    state = stream.state
    held = [await anext(chunks)]
    while len(held) < COMMIT_LOOKAHEAD and not (
        state.finish_reason or state.done or state.received_text()
    ):
        held.append(await anext(chunks))
    return b"".join(held)


def _count_attempt(rt: Runtime, m: ModelRuntime, outcome: str) -> None:
    metrics.child(metrics.UPSTREAM_ATTEMPTS, m.name, outcome).inc()
