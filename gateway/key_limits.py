"""A key's own limits at the edge (``accounting.limits``): ``rpm``, ``tpm`` and
``max_inflight``, checked in one store step before a request goes upstream and
corrected when it ends.

A request's token estimate is its prompt bound plus the output limit it may use on
its model (what the caller set, else the model's maximum); when it ends, what it did
not use goes back (nothing goes back while an abandoned answer is still drained: the
provider is generating it). Replays never count: they go nowhere.

Limits are load protection, not money: when the store cannot be reached the request
is let through (the failure is counted in ``spendgate_store_errors_total`` and
logged), while budgets keep failing closed.
"""

from __future__ import annotations

import math

from accounting.errors import AccountingError
from accounting.limits import lease_s
from gateway.context import Ctx
from gateway.errors import GatewayError
from gateway.runtime import Runtime
from gateway.telemetry import logging as log
from gateway.telemetry import metrics

WHAT = {"rpm": "requests per minute", "tpm": "tokens per minute", "inflight": "requests at once"}


async def admit(rt: Runtime, ctx: Ctx) -> None:
    """Take this request from its key's limits, or raise 429 ``key_rate_limited``."""
    limits = ctx.principal.limits
    if not limits.active:
        return
    tokens = ctx.prompt_bound() + ctx.max_output(rt.models[ctx.model])
    now = rt.wall()
    lease_until = now + lease_s(ctx.deadline.remaining())
    try:
        verdict = await rt.limiter.admit(
            ctx.principal.name, limits, tokens, ctx.request_id, lease_until, now
        )
    except AccountingError:
        return  # see the module docstring: let through
    if verdict.limit is None:
        ctx.rate_tokens = tokens
        return
    metrics.child(metrics.RATE_LIMITED, rt.labels.key(ctx.principal.name), verdict.limit).inc()
    log.event(
        "key_rate_limited",
        request_id=ctx.request_id,
        key=ctx.principal.name,
        limit=verdict.limit,
        retry_after_s=round(verdict.retry_after_s, 3),
    )
    raise _refusal(ctx, verdict.limit, verdict.retry_after_s)


def _refusal(ctx: Ctx, limit: str, retry_after_s: float) -> GatewayError:
    limits = ctx.principal.limits
    value = {"rpm": limits.rpm, "tpm": limits.tpm, "inflight": limits.max_inflight}[limit]
    return GatewayError(
        429,
        "key_rate_limited",
        f"the key {ctx.principal.name!r} is over its limit of {value} {WHAT[limit]} "
        f"({limit}); try again in {retry_after_s:.1f} s, or raise the key's {limit} "
        "in the gateway's config",
        headers={
            "retry-after": str(max(1, math.ceil(retry_after_s))),
            "retry-after-ms": str(max(1, math.ceil(retry_after_s * 1000))),
        },
    )


async def release(rt: Runtime, ctx: Ctx) -> None:
    """The request ended: its lease goes, and the tokens it did not use go back."""
    if ctx.rate_tokens is None:
        return
    tokens, ctx.rate_tokens = ctx.rate_tokens, None
    used = ctx.usage.total()
    unused = 0 if any(at.draining for at in ctx.attempts_open) else tokens - used
    try:
        await rt.limiter.release(
            ctx.principal.name, ctx.principal.limits, ctx.request_id, unused, rt.wall()
        )
    except AccountingError:
        return  # the lease expires by itself; the tokens stay taken
