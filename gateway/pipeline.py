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
from dataclasses import dataclass, field
from typing import Any

from accounting.budgets import Hold, Scope
from accounting.meter import final_usage
from accounting.pricing import cost_micros, micros_to_usd, worst_case_micros
from accounting.store.base import Charge, WorkflowState
from accounting.tokens import estimate_chat_prompt, estimate_embedding_input
from accounting.usage import Usage
from gateway.auth import Principal
from gateway.providers.base import Endpoint, UpstreamCall, UpstreamStream
from gateway.providers.classify import stream_broken
from gateway.runtime import ModelRuntime, Runtime
from gateway.telemetry import metrics
from policies import fallback
from policies.deadline import Deadline
from policies.errors import UpstreamError
from policies.fallback import Step
from policies.retry import RetryHooks

LEASE_MARGIN_S = 60.0
COMMIT_LOOKAHEAD = 8


@dataclass
class Ctx:
    """One request as it moves down the path."""

    request_id: str
    principal: Principal
    endpoint: Endpoint
    body: dict[str, Any]
    model: str
    stream: bool
    deadline: Deadline
    scope: Scope
    sdk_retrying: bool = False
    upstream_headers: dict[str, str] = field(default_factory=dict)
    start: float = field(default_factory=time.perf_counter)
    served: str | None = None
    attempts: int = 0
    retries: int = 0
    cost_micros: int = 0
    usage: Usage = field(default_factory=Usage)
    partial: bool = False
    workflow: WorkflowState | None = None
    upstream_s: float = 0.0
    ttft_s: float | None = None
    _prompt: dict[str, int] = field(default_factory=dict)

    def prompt_tokens(self, m: ModelRuntime) -> int:
        cached = self._prompt.get(m.upstream_model)
        if cached is None:
            if self.endpoint == "embeddings":
                cached = estimate_embedding_input(self.body, m.upstream_model)
            else:
                cached = estimate_chat_prompt(self.body, m.upstream_model)
            self._prompt[m.upstream_model] = cached
        return cached

    def max_output(self, m: ModelRuntime) -> int:
        if self.endpoint == "embeddings":
            return 0
        for name in ("max_completion_tokens", "max_tokens"):
            value = self.body.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return m.max_output_tokens


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class StreamAnswer:
    stream: UpstreamStream
    chunks: AsyncIterator[bytes]
    first: bytes
    hold: Hold
    model: ModelRuntime
    step_reason: str
    is_retry: bool


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
            on_fallback=_on_fallback,
        )


def _loop_deadline(deadline: Deadline) -> float:
    return asyncio.get_running_loop().time() + deadline.remaining()


def _on_retry(rt: Runtime, ctx: Ctx, exc: UpstreamError) -> None:
    ctx.retries += 1
    metrics.RETRIES.labels(rt.labels.model(ctx.served or ctx.model), exc.kind).inc()


def _on_fallback(from_model: str, to_model: str, reason: str) -> None:
    metrics.FALLBACKS.labels(from_model, to_model, reason).inc()


async def _reserve(rt: Runtime, ctx: Ctx, m: ModelRuntime) -> Hold:
    if not ctx.scope.enforced:
        return await rt.budgets.reserve(ctx.scope, 0, 0, 0.0)
    prompt = ctx.prompt_tokens(m)
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
    call = UpstreamCall(
        endpoint=ctx.endpoint,
        body=ctx.body,
        upstream_model=m.upstream_model,
        stream=ctx.stream,
        headers=ctx.upstream_headers,
        deadline=ctx.deadline.at,
        max_output_tokens=m.max_output_tokens,
    )
    is_retry = step.attempt > 1
    started = time.perf_counter()
    try:
        if ctx.stream:
            return await _open_stream(rt, ctx, m, call, hold, step.reason, is_retry)
        done = await m.provider.complete(call)
    except UpstreamError as exc:
        _count_attempt(rt, m, exc.kind)
        await settle(
            rt,
            ctx,
            m,
            hold,
            exc.usage or Usage(),
            step.reason,
            is_retry,
            sent=exc.status is not None,
        )
        raise
    except BaseException:
        await _settle_interrupted(rt, ctx, m, hold, step.reason, is_retry)
        raise
    finally:
        ctx.upstream_s += time.perf_counter() - started
    _count_attempt(rt, m, "success")
    await settle(rt, ctx, m, hold, done.usage, step.reason, is_retry, estimate=True, text=done.text)
    return Answer(done.status, done.headers, done.body)


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
    metrics.UPSTREAM_ATTEMPTS.labels(m.name, outcome).inc()


async def _settle_interrupted(
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
        usage, estimated = final_usage(usage, text, m.upstream_model, lambda: ctx.prompt_tokens(m))
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
    ctx.workflow = workflow or ctx.workflow


def _count_spend(rt: Runtime, ctx: Ctx, m: ModelRuntime, usage: Usage, cost: int) -> None:
    for kind, count in usage.by_kind().items():
        if count:
            metrics.TOKENS.labels(m.name, kind).inc(count)
    if cost:
        metrics.COST.labels(m.name, rt.labels.key(ctx.principal.name)).inc(cost / 1_000_000)


def _add(a: Usage, b: Usage) -> Usage:
    def plus(x: int | None, y: int | None) -> int | None:
        return None if x is None and y is None else (x or 0) + (y or 0)

    return Usage(
        plus(a.input_tokens, b.input_tokens),
        plus(a.output_tokens, b.output_tokens),
        plus(a.cached_input_tokens, b.cached_input_tokens),
        plus(a.partial_output_tokens, b.partial_output_tokens),
    )


def response_headers(ctx: Ctx, *, with_cost: bool = True) -> dict[str, str]:
    headers = {
        "x-request-id": ctx.request_id,
        "x-spendgate-model": ctx.served or ctx.model,
        "x-spendgate-attempts": str(ctx.attempts),
    }
    if with_cost:
        headers["x-spendgate-cost-usd"] = micros_to_usd(ctx.cost_micros)
    wf = ctx.workflow
    if wf is not None:
        headers["x-workflow-spent-usd"] = micros_to_usd(wf.spent_micros)
        remaining = wf.remaining_micros
        if remaining is not None:
            headers["x-workflow-remaining-usd"] = micros_to_usd(remaining)
    return headers


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


def broken(provider: str, why: str) -> UpstreamError:
    return stream_broken(provider, why)
