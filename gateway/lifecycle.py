"""Background work of a running gateway, and its orderly end.

While serving: the stall and in-flight gauges, the periodic sweep of expired holds,
the store's self-check (a Redis that lost its data), and the retry loop of settles
the store could not take. At the end: tracked work (stream ends, settles, drains of
abandoned answers) gets time to finish, drains still running are cut and charged
their worst case, deferred settles get one more try, and whatever could not be
written is logged, never dropped in silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from accounting.budgets import SettleHooks
from accounting.errors import AccountingError, StoreUnavailable
from accounting.pricing import micros_to_usd
from accounting.store.base import Charge, Reservation
from gateway import guardrails, workflows
from gateway.runtime import Runtime
from gateway.telemetry import logging as log
from gateway.telemetry import metrics

TRACKED_WAIT_S = 10.0
CANCELLED_WAIT_S = 5.0
FLUSH_S = 3.0
GC_YOUNG = 10_000  # allocations between young collections (the default: 700)


def settle_hooks() -> SettleHooks:
    return SettleHooks(deferred=_deferred, landed_late=_landed, dropped=_dropped, orphan=_orphan)


def _fields(res: Reservation, charge: Charge) -> dict[str, Any]:
    return {
        "request_id": charge.request_id,
        "key": res.key,
        "workflow_id": res.workflow_id,
        "reservation_id": res.id,
        "model": charge.model,
        "cost_usd": micros_to_usd(charge.cost_micros),
        "rule": charge.rule,
    }


def _deferred(res: Reservation, charge: Charge, exc: StoreUnavailable, tries: int) -> None:
    if tries == 0:  # once per settle: every later failure is in the store error count
        log.event("settle_deferred", level=30, error=str(exc), **_fields(res, charge))


def _landed(res: Reservation, charge: Charge, tries: int) -> None:
    log.event("settle_landed_late", tries=tries, **_fields(res, charge))


def _dropped(res: Reservation, charge: Charge) -> None:
    log.event("settle_dropped", level=40, **_fields(res, charge))


def _refused(res: Reservation, charge: Charge, exc: ValueError) -> None:
    log.event("settle_refused", level=40, error=str(exc), **_fields(res, charge))


def _orphan(res: Reservation, charge: Charge) -> None:
    metrics.SETTLE_ORPHANS.inc()
    log.event("settle_without_hold", level=30, **_fields(res, charge))


@contextlib.asynccontextmanager
async def running(rt: Runtime) -> AsyncIterator[None]:
    await rt.store.open()
    if rt.auth.open:
        log.event(
            "open_gateway",
            level=30,
            message="no gateway keys configured (auth.keys): ANYONE who can reach "
            "this port can spend through it",
        )
    log.event("started", models=sorted(rt.models), store=rt.rules.store_scheme)
    background = [
        _spawn(workflows.watch_stalls(rt)),
        _spawn(_watch_store(rt)),
        _spawn(rt.budgets.run_retries()),
        _spawn(guardrails.watch_cancels(rt)),
    ]
    _settle_heap()
    try:
        yield
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await _wind_down(rt)
        await rt.pool.aclose()
        await rt.store.close()
        rt.tracing.shutdown()
        log.sync_access()  # uvicorn may end the process by its signal: no exit handlers


def _settle_heap() -> None:
    """What start-up built lives as long as the process: out of the cyclic collector's
    sight (``gc.freeze``), and a young generation large enough that a busy loop does
    not collect on every few requests."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(max(GC_YOUNG, gc.get_threshold()[0]), older, oldest)


def _spawn(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    return asyncio.ensure_future(work)


async def _watch_store(rt: Runtime) -> None:
    while True:
        with contextlib.suppress(AccountingError):  # counted and logged by the store guard
            await rt.store.check(rt.wall())
        metrics.STORE_RESET.set(1 if rt.store.reset_info() is not None else 0)
        metrics.SETTLES_PENDING.set(rt.budgets.pending_settles)
        await asyncio.sleep(rt.rules.defaults.store_check_interval_s)


async def _wind_down(rt: Runtime) -> None:
    if rt.settling:
        await asyncio.wait(rt.settling, timeout=TRACKED_WAIT_S)
    if rt.settling:  # drains of abandoned answers still reading: cut, charge worst case
        for task in list(rt.settling):
            task.cancel()
        await asyncio.wait(rt.settling, timeout=CANCELLED_WAIT_S)
    left = await rt.budgets.flush(FLUSH_S)
    if left or rt.settling:
        log.event(
            "shutdown_with_unsettled_work",
            level=40,
            deferred_settles=left,
            unfinished_tasks=len(rt.settling),
            message="their holds will run out and be counted as spent in full",
        )
