"""The request path, one short async function per step, in the order it runs:

routes       parse JSON (400), auth (401/403/404), headers (400)
guard        idempotency: replay | claim | conflict (422) | wait for the holder
fallback     for each candidate: breaker open -> next
  retry      transient errors only; Retry-After or jittered backoff; within the deadline
    attempt  reserve the worst case (402) -> provider call -> settle by its rule
relay        a stream is committed at its first event; no failover after that
finish       the exchange: settle leftovers, idempotency record, metrics, access log

An attempt is always settled, whatever ends it (``gateway.settlement`` has the rules):
a plain answer abandoned at the deadline is handed to a background drain that reads it
to its end and charges what the provider reports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from accounting.errors import BudgetExceeded
from accounting.pricing import worst_case_micros
from gateway.context import Answer, Attempt, Ctx, StreamAnswer
from gateway.counting import MAX_COUNTED_BYTES
from gateway.drain import drain
from gateway.providers.base import Completed, UpstreamCall, UpstreamStream
from gateway.providers.classify import silent, stream_broken
from gateway.runtime import ModelRuntime, Runtime
from gateway.settlement import settle_answer, settle_error, settle_leftovers
from gateway.telemetry import logging as log
from gateway.telemetry import metrics, tracing
from policies import fallback
from policies.deadline import Deadline
from policies.errors import UpstreamError
from policies.fallback import Step
from policies.retry import RetryHooks

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

    async def one(step: Step) -> Answer | StreamAnswer:
        return await attempt(rt, ctx, step)

    async with asyncio.timeout_at(_loop_deadline(ctx.deadline)):
        return await fallback.run(
            ctx.model,
            rt.routes,
            one,
            ctx.deadline,
            hooks,
            sdk_retrying=ctx.sdk_retrying,
            on_fallback=lambda a, b, why: _on_fallback(ctx, a, b, why),
            allowed=ctx.principal.may_use,
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


async def _reserve(rt: Runtime, ctx: Ctx, m: ModelRuntime, step: Step) -> Attempt:
    """Hold the attempt's worst case. The prompt is bounded by the body's size (no
    tokenizing) when that bound is small next to what the budget has left; near a cap,
    or when the bound does not fit, the tokenizer's count (an upper bound for the
    model's own tokenizer) is used, so a loose bound never turns away a request the
    budget could pay for."""
    out = ctx.max_output(m)
    if not ctx.scope.enforced:
        hold = await rt.budgets.reserve(ctx.scope, 0, 0, 0.0)
        return _opened(ctx, Attempt(m, hold, step.reason, step.attempt > 1, -1, out))
    prompt = ctx.prompt_bound()
    if not _near_cap(rt, ctx, m, prompt, out):
        try:
            return _opened(ctx, await _hold(rt, ctx, m, step, prompt, out))
        except BudgetExceeded:
            pass
    upper = await _counted_upper(rt, ctx, m)
    return _opened(ctx, await _hold(rt, ctx, m, step, min(upper or prompt, prompt), out))


async def _counted_upper(rt: Runtime, ctx: Ctx, m: ModelRuntime) -> int | None:
    """The tokenizer's upper bound of the prompt, unless counting would cost too much
    (a huge body, or the counting pool is busy): then None, and the bound stands."""
    if ctx.body_bytes > MAX_COUNTED_BYTES:
        return None
    return await rt.counter.run(lambda: ctx.prompt_upper(m))


def _opened(ctx: Ctx, at: Attempt) -> Attempt:
    ctx.attempts_open.append(at)
    return at


def _near_cap(rt: Runtime, ctx: Ctx, m: ModelRuntime, prompt: int, out: int) -> bool:
    scope = ctx.scope
    if scope.cap_tokens is not None and (prompt + out) * NEAR_CAP > scope.cap_tokens:
        return True
    if scope.cap_micros is None or scope.workflow_id is None:
        return False
    left = rt.seen.remaining_hint(scope.key, scope.workflow_id, scope.cap_micros)
    return worst_case_micros(m.price, prompt, out) * NEAR_CAP > left


async def _hold(
    rt: Runtime, ctx: Ctx, m: ModelRuntime, step: Step, prompt: int, out: int
) -> Attempt:
    worst = worst_case_micros(m.price, prompt, out)
    drain = 0.0 if ctx.stream else rt.drain_s
    lease = max(ctx.deadline.remaining(), 0.0) + rt.config.defaults.lease_margin_s + drain
    hold = await rt.budgets.reserve(ctx.scope, worst, prompt + out, lease)
    if hold.workflow is not None:
        ctx.workflow = hold.workflow
        rt.seen.note(hold.workflow)
    return Attempt(m, hold, step.reason, step.attempt > 1, prompt, out)


def _first_token_limit(ctx: Ctx, m: ModelRuntime, step: Step) -> float:
    """The model's first-token limit, but never more than this attempt's share of the
    time left when other candidates wait behind it, so they get time to answer."""
    if step.waiting == 0:
        return m.first_token_s
    return max(0.001, min(m.first_token_s, ctx.deadline.remaining() / (1 + step.waiting)))


async def attempt(
    rt: Runtime, ctx: Ctx, step: Step, body: dict[str, Any] | None = None
) -> Answer | StreamAnswer:
    """One upstream attempt at ``step.model`` (with ``body`` instead of the request's,
    for a continuation), reserved before and settled after, whatever ends it."""
    m = rt.models[step.model]
    ctx.served = m.name
    ctx.attempts += 1
    at = await _reserve(rt, ctx, m, step)
    span = rt.tracing.start_attempt(ctx.span, _attempt_attributes(rt, ctx, m, step))
    first = _first_token_limit(ctx, m, step)
    call = UpstreamCall(
        endpoint=ctx.endpoint,
        body=body if body is not None else ctx.body,
        upstream_model=m.upstream_model,
        stream=ctx.stream,
        headers=tracing.inject(span, ctx.upstream_headers),
        deadline=ctx.deadline.at,
        max_output_tokens=m.max_output_tokens,
        first_token_s=first,
        idle_s=m.idle_s,
    )
    started = time.perf_counter()
    try:
        if ctx.stream:
            answer = await _open_stream(rt, ctx, at, call, first)
            tracing.end(span, {"spendgate.outcome": "success"})
            return answer
        done = await _complete(rt, at, ctx, call, first)
    except UpstreamError as exc:
        _count_attempt(rt, m, exc.kind)
        attributes = {"spendgate.outcome": exc.kind, "http.response.status_code": exc.status}
        tracing.end(span, attributes, exc.message)
        await settle_error(rt, ctx, at, exc)
        raise
    except BaseException as exc:
        tracing.end(span, {"spendgate.outcome": "interrupted"}, type(exc).__name__)
        if not at.draining:
            await asyncio.shield(rt.track(settle_leftovers(rt, ctx)))
        raise
    finally:
        ctx.upstream_s += time.perf_counter() - started
    _count_attempt(rt, m, "success")
    tracing.end(span, {"spendgate.outcome": "success", **tracing.usage_attributes(done.usage)})
    await settle_answer(rt, ctx, at, done, "reported")
    return Answer(done.status, done.headers, done.body)


async def _complete(
    rt: Runtime, at: Attempt, ctx: Ctx, call: UpstreamCall, limit_s: float
) -> Completed:
    """The provider's plain answer, within ``limit_s``. If it does not come in time, or
    the request is cancelled (its deadline) while the provider works, the call goes on
    in the background: the provider bills the whole answer anyway, so it is read to its
    end and charged what it reports."""
    task = asyncio.ensure_future(at.model.provider.complete(call))
    try:
        async with asyncio.timeout(limit_s) as limit:
            return await asyncio.shield(task)
    except asyncio.CancelledError:
        _abandon(rt, ctx, at, task)
        raise
    except TimeoutError:
        if not limit.expired():
            raise
        _abandon(rt, ctx, at, task)
        raise silent(at.model.provider.name, f"gave no answer within {limit_s:g} s") from None


def _abandon(rt: Runtime, ctx: Ctx, at: Attempt, task: asyncio.Future[Completed]) -> None:
    at.draining = True
    rt.track(drain(rt, ctx, at, task))


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
    rt: Runtime, ctx: Ctx, at: Attempt, call: UpstreamCall, limit_s: float
) -> StreamAnswer:
    """The upstream's stream, up to its first content event (the commit point), all of
    it within ``limit_s``: a stream whose first token is late fails over before the
    client has seen any content."""
    m = at.model
    try:
        async with asyncio.timeout(limit_s) as limit:
            stream = await m.provider.stream(call)
            at.stream = stream
            chunks = aiter(stream)
            first = await _until_content(stream, chunks)
    except StopAsyncIteration:
        await _close(at)
        raise stream_broken(m.provider.name, "ended before its first event") from None
    except TimeoutError:
        await _close(at)
        if not limit.expired():
            raise
        raise silent(m.provider.name, f"sent no content within {limit_s:g} s") from None
    except BaseException:
        await _close(at)
        raise
    ctx.ttft_s = time.perf_counter() - ctx.start
    _count_attempt(rt, m, "success")
    return StreamAnswer(stream, chunks, first, at)


async def _close(at: Attempt) -> None:
    if at.stream is not None:
        await at.stream.aclose()


async def _until_content(stream: UpstreamStream, chunks: AsyncIterator[bytes]) -> bytes:
    """Events up to the first that carries content: the commit point.

    Events before it (the role chunk, pings) carry nothing a second model could
    contradict, so holding them back lets a failure right after them still fail over.
    """
    state = stream.state
    held = [await anext(chunks)]
    while len(held) < COMMIT_LOOKAHEAD and not (
        state.finish_reason or state.done or state.content_seen
    ):
        held.append(await anext(chunks))
    return b"".join(held)


def _count_attempt(rt: Runtime, m: ModelRuntime, outcome: str) -> None:
    metrics.child(metrics.UPSTREAM_ATTEMPTS, m.name, outcome).inc()
