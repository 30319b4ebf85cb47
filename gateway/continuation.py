"""Mid-stream continuation: a committed stream that breaks is finished by another
attempt, in the same client stream.

When a stream breaks after its first content reached the client (a reset, silence
past ``idle_timeout_s``, garbage, an upstream error event), and the request's deadline
and budget allow, the next candidate that can continue — the same model, then the
requested model's fallbacks, each only if its ``continuation: prefill`` is set, the
key may use it and its breaker admits it — is asked to continue from exactly the text
the client already has, by assistant prefill (Anthropic: a final assistant message;
OpenAI-compatible servers: that plus ``continue_final_message``). Its output is
spliced into the client's stream (``gateway.splice``).

The broken attempt is settled first (what it really generated), the continuation is
reserved before it is sent and settled after. What is not continued: a tool call
(no provider takes a partial tool call as prefill), several choices, text past what
is kept for accounting, a request with too little time left; then the stream ends
with an in-band error naming the original failure, never a continuation's own error.
"""

from __future__ import annotations

from typing import Any

from accounting.errors import AccountingError
from gateway import pipeline
from gateway.context import Ctx, StreamAnswer
from gateway.request import OUTPUT_LIMITS
from gateway.runtime import ModelRuntime, Runtime
from gateway.settlement import settle_received
from gateway.splice import Splice
from gateway.telemetry import logging as log
from gateway.telemetry import metrics
from policies.breaker import BreakerOpen
from policies.errors import UpstreamError
from policies.fallback import Step

MAX_CONTINUATIONS = 2
MIN_LEFT_S = 1.0  # a continuation needs at least this long before the deadline


async def resume(
    rt: Runtime, ctx: Ctx, segment: StreamAnswer, cause: UpstreamError, splice: Splice
) -> StreamAnswer | None:
    """Continue the stream ``segment`` broke off with ``cause``, or None."""
    state = segment.stream.state
    await segment.stream.aclose()
    charged = await settle_received(rt, ctx, segment.attempt)
    splice.segment_ended(state, charged)
    why = _cannot(ctx, segment, splice)
    if why is not None:
        _outcome(ctx, segment.attempt.model.name, "not_continuable", cause, why)
        return None
    for m in _candidates(rt, ctx, segment.attempt.model):
        answer = await _try(rt, ctx, m, splice, cause)
        if answer is not None:
            _outcome(ctx, m.name, "continued", cause, None)
            return answer
    _outcome(ctx, segment.attempt.model.name, "unavailable", cause, "no model could continue it")
    return None


def _cannot(ctx: Ctx, segment: StreamAnswer, splice: Splice) -> str | None:
    state = segment.stream.state
    if ctx.endpoint != "chat":
        return "only Chat Completions streams are continued"
    if state.tool_seen:
        return "a tool call was cut in its arguments"
    if splice.continued >= MAX_CONTINUATIONS:
        return f"it was continued {MAX_CONTINUATIONS} times already"
    if state.overflow_bytes:
        return "its text is longer than what is kept"
    n = ctx.body.get("n", 1)
    if isinstance(n, int) and n > 1:
        return "it has several choices"
    if ctx.deadline.remaining() < MIN_LEFT_S:
        return "too little time is left before the deadline"
    return None


def _candidates(rt: Runtime, ctx: Ctx, broken: ModelRuntime) -> list[ModelRuntime]:
    """The same model, then the requested model's fallbacks: those that can continue."""
    names = dict.fromkeys([broken.name, *rt.route(ctx.model).fallbacks])
    found = []
    for name in names:
        m = rt.models[name]
        usable = m.can_continue and m.kind == "chat" and ctx.principal.may_use(name)
        if usable and m.route.breaker.admits():
            found.append(m)
    return found


async def _try(
    rt: Runtime, ctx: Ctx, m: ModelRuntime, splice: Splice, cause: UpstreamError
) -> StreamAnswer | None:
    prefill = splice.text.rstrip() if m.provider_kind == "anthropic" else splice.text
    body = continuation_body(ctx.body, m, prefill, splice.produced_tokens)
    step = Step(m.name, "continuation", attempt=1)
    try:
        with m.route.breaker.calling():
            answer = await pipeline.attempt(rt, ctx, step, body)
    except (UpstreamError, BreakerOpen, AccountingError) as exc:
        log.event(
            "continuation_failed",
            request_id=ctx.request_id,
            model=m.name,
            cause=cause.message,
            error=getattr(exc, "message", None) or type(exc).__name__,
        )
        return None
    if not isinstance(answer, StreamAnswer):  # a stream request gets a stream
        return None
    splice.continuing(prefill)
    return answer


def continuation_body(
    body: dict[str, Any], m: ModelRuntime, prefill: str, produced: int
) -> dict[str, Any]:
    """The request again, with the answer so far as the assistant's unfinished turn and
    the caller's output limit lowered by what was already produced."""
    out = dict(body)
    messages = list(body.get("messages") or ())
    out["messages"] = [*messages, {"role": "assistant", "content": prefill}]
    if m.provider_kind != "anthropic":
        out["continue_final_message"] = True
        out["add_generation_prompt"] = False
    for name in OUTPUT_LIMITS:
        limit = out.get(name)
        if isinstance(limit, int) and not isinstance(limit, bool):
            out[name] = max(1, limit - produced)
    return out


def _outcome(ctx: Ctx, model: str, outcome: str, cause: UpstreamError, why: str | None) -> None:
    metrics.STREAM_CONTINUATIONS.labels(model, outcome).inc()
    log.event(
        "stream_continuation",
        request_id=ctx.request_id,
        model=model,
        outcome=outcome,
        cause=cause.message,
        reason=why,
    )
