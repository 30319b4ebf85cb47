"""Plain answers abandoned at the request's deadline, read on in the background.

A provider bills the whole answer of a non-streaming call even when the caller gave
up on it. So when a request's deadline passes while the provider works, the client
gets its 504 at once, but the call is not cut: it goes on here, bounded by
``defaults.drain_timeout_s`` (and by the upstream limits on what an answer may hold),
and is settled with the usage the provider reports (rule ``drained``). A drain that
fails or runs out of time is charged the hold's worst case (rule ``worst_case``).
"""

from __future__ import annotations

import asyncio
import time

from accounting.pricing import micros_to_usd
from gateway.context import Attempt, Ctx
from gateway.providers.base import Completed
from gateway.runtime import Runtime
from gateway.settlement import settle_answer, settle_error, settle_worst
from gateway.telemetry import logging as log
from policies.errors import UpstreamError


async def drain(rt: Runtime, ctx: Ctx, at: Attempt, task: asyncio.Future[Completed]) -> None:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(rt.drain_s):
            done = await task
    except UpstreamError as exc:
        await settle_error(rt, ctx, at, exc)
        _logged(ctx, at, started, f"failed: {exc.message}")
    except (TimeoutError, asyncio.CancelledError) as exc:
        task.cancel()
        await asyncio.shield(settle_worst(rt, ctx, at))
        _logged(ctx, at, started, "timed out" if isinstance(exc, TimeoutError) else "cancelled")
        if isinstance(exc, asyncio.CancelledError):
            raise
    else:
        await settle_answer(rt, ctx, at, done, "drained")
        _logged(ctx, at, started, "read to its end")


def _logged(ctx: Ctx, at: Attempt, started: float, outcome: str) -> None:
    log.event(
        "abandoned_attempt_settled",
        request_id=ctx.request_id,
        model=at.model.name,
        outcome=outcome,
        rule=ctx.rules[-1] if ctx.rules else None,
        request_cost_usd=micros_to_usd(ctx.cost_micros),
        seconds=round(time.perf_counter() - started, 3),
    )
