"""Reserving an attempt's worst case, and the output limit it may then use.

The prompt is bounded by the body's size (no tokenizing) when that bound is small next
to what the budget has left; near a cap, or when the bound does not fit, it is counted
(an upper bound for the model's own tokenizer), so a loose bound never turns away a
request the budget could pay for. When even that does not fit, the output limit is
lowered (or set, when the caller named none) to the largest the refusing budget can pay
for (``budgets.clamp_output``), never below ``budgets.min_output_tokens`` and never
above the caller's own limit: the reservation is then exact, so no cap is overspent.
"""

from __future__ import annotations

from typing import Any

from accounting.errors import BudgetExceeded
from accounting.pricing import max_output_within, worst_case_micros
from gateway.context import Attempt, Ctx
from gateway.counting import MAX_COUNTED_BYTES
from gateway.runtime import ModelRuntime, Runtime
from gateway.translate.reasoning import openai_reasons
from policies.fallback import Step

NEAR_CAP = 10  # a bound above a tenth of what is left is counted exactly
CLAMP_TRIES = 3
LIMIT_FIELDS = {"responses": "max_output_tokens", "messages": "max_tokens"}


async def reserve(rt: Runtime, ctx: Ctx, m: ModelRuntime, step: Step) -> Attempt:
    """Hold the attempt's worst case. The prompt is bounded by the body's size (no
    tokenizing) when that bound is small next to what the budget has left; near a cap,
    or when the bound does not fit, the tokenizer's count (an upper bound for the
    model's own tokenizer) is used, so a loose bound never turns away a request the
    budget could pay for. When even that does not fit, the output limit is lowered to
    what the budget can pay for (``budgets.clamp_output``)."""
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
    upper = await counted_upper(rt, ctx, m)
    prompt = min(upper or prompt, prompt)
    try:
        return _opened(ctx, await _hold(rt, ctx, m, step, prompt, out))
    except BudgetExceeded as refused:
        if not rt.rules.budgets.clamp_output or ctx.endpoint == "embeddings":
            raise
        return _opened(ctx, await _clamped(rt, ctx, m, step, prompt, refused))


async def _clamped(
    rt: Runtime, ctx: Ctx, m: ModelRuntime, step: Step, prompt: int, refused: BudgetExceeded
) -> Attempt:
    """Hold the largest output limit the refusing budget can pay for (per choice, never
    above the caller's), or raise when that is below ``budgets.min_output_tokens``. A
    second budget (tokens, the key's) may refuse in turn: each refusal lowers it again."""
    limit, choices = ctx.output_limit(m)
    floor = rt.rules.budgets.min_output_tokens
    for _ in range(CLAMP_TRIES):
        fitting = _fitting_output(m, prompt, refused, limit * choices, ctx.caching)
        per_choice = min(limit, fitting // choices)
        if per_choice < floor:
            raise refused
        try:
            at = await _hold(rt, ctx, m, step, prompt, per_choice * choices)
        except BudgetExceeded as exc:
            refused, limit = exc, per_choice
            continue
        at.sent_limit = ctx.sent_limit = per_choice
        return at
    raise refused


def _fitting_output(
    m: ModelRuntime, prompt: int, refused: BudgetExceeded, most: int, caching: bool
) -> int:
    """The most output tokens (in all) what ``refused`` says is left can pay for."""
    left = refused.remaining
    if refused.unit == "tokens":
        return max(0, min(most, left - prompt))
    return max_output_within(m.price, prompt, left, most, caching=caching)


async def counted_upper(rt: Runtime, ctx: Ctx, m: ModelRuntime) -> int | None:
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
    return worst_case_micros(m.price, prompt, out, caching=ctx.caching) * NEAR_CAP > left


async def _hold(
    rt: Runtime, ctx: Ctx, m: ModelRuntime, step: Step, prompt: int, out: int
) -> Attempt:
    worst = worst_case_micros(m.price, prompt, out, caching=ctx.caching)
    drain = 0.0 if ctx.stream else rt.drain_s
    lease = max(ctx.deadline.remaining(), 0.0) + rt.rules.defaults.lease_margin_s + drain
    new_call = ctx.attempts == 1 and step.reason != "continuation"
    hold = await rt.budgets.reserve(ctx.scope, worst, prompt + out, lease, new_call)
    if hold.workflow is not None:
        ctx.workflow = hold.workflow
        rt.seen.note(hold.workflow)
        if hold.workflow.deadline_at is not None:  # never outlive the workflow
            ctx.clamp_deadline(hold.workflow.deadline_at - rt.wall())
    return Attempt(m, hold, step.reason, step.attempt > 1, prompt, out)


def with_limit(ctx: Ctx, m: ModelRuntime, at: Attempt, body: dict[str, Any]) -> dict[str, Any]:
    """The body with the output limit this attempt may use: lowered to what the budget
    pays for, or to the model's maximum; set when the caller named none."""
    field, asked = ctx.caller_limit()
    limit = at.sent_limit
    if limit is None and asked is not None and asked > m.max_output_tokens:
        limit = m.max_output_tokens
    if limit is None or ctx.endpoint == "embeddings":
        return body
    out = dict(body)
    out[field or LIMIT_FIELDS.get(ctx.endpoint) or _limit_field(m)] = limit
    return out


def _limit_field(m: ModelRuntime) -> str:
    """OpenAI's reasoning models take only ``max_completion_tokens``; every other chat
    API (OpenAI-compatible servers, Anthropic's translation) takes ``max_tokens``."""
    reasoning = m.provider_kind == "openai" and openai_reasons(m.upstream_model)
    return "max_completion_tokens" if reasoning else "max_tokens"
