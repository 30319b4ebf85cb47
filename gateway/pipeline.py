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

from gateway import reserve
from gateway.context import Answer, Attempt, Ctx, StreamAnswer
from gateway.drain import drain
from gateway.providers.base import Completed, UpstreamCall, UpstreamStream
from gateway.providers.classify import silent, stream_broken
from gateway.runtime import ModelRuntime, Runtime
from gateway.settlement import settle_answer, settle_error, settle_leftovers
from gateway.telemetry import logging as log
from gateway.telemetry import metrics, tracing
from gateway.translate import registry as translators
from policies import fallback
from policies.deadline import Deadline
from policies.errors import UpstreamError
from policies.fallback import Step
from policies.retry import RetryHooks

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

    choices = fallback.Choices(
        allowed=ctx.principal.may_use,
        fits=lambda name: _fits(rt, ctx, rt.models[name]),
        on_fallback=lambda a, b, why: _on_fallback(ctx, a, b, why),
        on_skip=lambda a, b, why: _on_skip(ctx, a, b, why),
    )
    async with asyncio.timeout_at(_loop_deadline(ctx.deadline)) as ctx.timer:
        return await fallback.run(
            ctx.model,
            rt.route,
            one,
            ctx.deadline,
            hooks,
            sdk_retrying=ctx.sdk_retrying,
            choices=choices,
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


async def _fits(rt: Runtime, ctx: Ctx, m: ModelRuntime) -> str | None:
    """Why fallback ``m`` cannot serve this request faithfully (None: it can): a
    request its API cannot express (``n`` > 1, logprobs, ...), or a prompt beyond its
    context window (the byte bound first; counted only when that bound is over)."""
    why = translators.incompatible(ctx.endpoint, ctx.body, m, rt.models[ctx.model])
    if why is not None or m.context_window is None or ctx.prompt_bound() <= m.context_window:
        return why
    counted = await reserve.counted_upper(rt, ctx, m)
    if counted is not None and counted <= m.context_window:
        return None
    return f"the prompt is beyond its context window of {m.context_window} tokens"


def _on_skip(ctx: Ctx, from_model: str, to_model: str, reason: str) -> None:
    ctx.skipped.append((to_model, reason))
    metrics.FALLBACKS.labels(from_model, to_model, "incompatible").inc()
    log.event(
        "fallback_skipped",
        request_id=ctx.request_id,
        from_model=from_model,
        to_model=to_model,
        reason=reason,
    )


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
    at = await _admitted(rt, ctx, m, step)
    span = rt.tracing.start_attempt(ctx.span, _attempt_attributes(rt, ctx, m, step))
    first = _first_token_limit(ctx, m, step)
    call = UpstreamCall(
        endpoint=ctx.endpoint,
        body=reserve.with_limit(ctx, m, at, body if body is not None else ctx.body),
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


async def _admitted(rt: Runtime, ctx: Ctx, m: ModelRuntime, step: Step) -> Attempt:
    """A place in the provider's concurrency (``provider_gate``: a fair wait), then
    the attempt's reservation; the place is given back when the attempt is settled."""
    slot = await m.gate.acquire(ctx.principal.name, ctx.prompt_bound() + ctx.max_output(m))
    try:
        at = await reserve.reserve(rt, ctx, m, step)
    except BaseException:
        slot.release(ok=False)
        raise
    at.slot = slot
    return at


async def _complete(
    rt: Runtime, at: Attempt, ctx: Ctx, call: UpstreamCall, limit_s: float
) -> Completed:
    """The provider's plain answer, within ``limit_s``. If it does not come in time, or
    the request is cancelled (its deadline) while the provider works, the call goes on
    in the background: the provider bills the whole answer anyway, so it is read to its
    end and charged what it reports."""
    api = translators.adapter(ctx.endpoint, at.model.provider_kind)
    task = asyncio.ensure_future(api.complete(at.model.provider, call))
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
        "spendgate.breaker_state": m.route.breaker.state,
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
            api = translators.adapter(ctx.endpoint, m.provider_kind)
            stream = await api.stream(m.provider, call)
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
