"""Workflow guardrails the gateway runs itself: the kill switch's reach into requests in
flight, and the cost-anomaly flag. (The limits checked before a request is sent — the
workflow deadline, the call cap, the loop guard, a cancel — are one atomic step of the
store's reservation.)

A cancel reaches this process's requests of the workflow at once, and another
replica's within ``workflows.cancel_poll_s``: each process polls the store, in one
round trip, for the workflows it has requests in flight for. A cut stream ends with an
error event and a cut plain answer with a 403; each is settled with what was really
generated (a stream is closed, so the provider stops; a plain answer the provider will
bill anyway is read on in the background).

A running workflow whose spend passes ``workflows.cost_anomaly_factor`` times the
median cost of its kind's completed workflows is flagged at once: in its status, in a
``cost_anomaly`` log event, and — with ``workflows.cost_anomaly_stop`` — stopped like a
cancel (counted as a ``cost_anomaly`` guardrail rejection).
"""

from __future__ import annotations

import asyncio
import contextlib

from accounting.errors import AccountingError
from accounting.pricing import micros_to_usd
from accounting.store.base import WorkflowState
from gateway.runtime import Runtime
from gateway.telemetry import logging as log
from gateway.telemetry import metrics


async def watch_cancels(rt: Runtime) -> None:
    """Cut requests in flight whose workflow another replica cancelled."""
    interval = rt.rules.workflows.cancel_poll_s
    while True:
        pairs = rt.cuts.pairs()
        if pairs:
            with contextlib.suppress(AccountingError):  # counted by the store guard
                for pair in await rt.store.cancelled_among(pairs):
                    rt.cuts.cut(pair)
        await asyncio.sleep(interval)


async def refresh_medians(rt: Runtime) -> None:
    with contextlib.suppress(AccountingError):
        rt.cuts.medians = await rt.store.kind_medians()


def anomaly_of(rt: Runtime, wf: WorkflowState) -> int | None:
    """The median the workflow's spend is an anomaly against, or None (also for a
    workflow this guardrail stopped)."""
    live = wf.status == "running" or wf.stop_reason == "cost_anomaly"
    if not live or wf.name is None:
        return None
    median = rt.cuts.medians.get(wf.name)
    if not median:
        return None
    return median if wf.spent_micros > rt.rules.workflows.cost_anomaly_factor * median else None


async def check_anomaly(rt: Runtime, wf: WorkflowState) -> None:
    """After a settle: flag (and, if configured, stop) a workflow that costs far more
    than its kind usually does."""
    median = anomaly_of(rt, wf)
    pair = (wf.key, wf.workflow_id)
    if median is None or pair in rt.cuts.flagged:
        return
    if len(rt.cuts.flagged) > 10_000:
        rt.cuts.flagged.clear()
    rt.cuts.flagged.add(pair)
    stop = rt.rules.workflows.cost_anomaly_stop
    log.event(
        "cost_anomaly",
        level=30,
        key=wf.key,
        workflow_id=wf.workflow_id,
        workflow=wf.name,
        spent_usd=micros_to_usd(wf.spent_micros),
        kind_median_usd=micros_to_usd(median),
        factor=rt.rules.workflows.cost_anomaly_factor,
        stopped=stop,
    )
    if stop:
        metrics.GUARDRAIL_REJECTIONS.labels("cost_anomaly").inc()
        with contextlib.suppress(AccountingError):  # its calls in flight learn it by polling
            await rt.store.cancel_workflow(wf.key, wf.workflow_id, rt.wall(), "cost_anomaly")


def cost_label(rt: Runtime, name: str | None) -> str:
    """The workflow kind as a bounded metric label."""
    return name if name is not None and name in rt.rules.workflows.names else "other"
