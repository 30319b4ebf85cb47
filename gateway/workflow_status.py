"""A workflow as its status endpoints show it: spend, limits and how much of each is
left, what it said of itself, and whether it costs far more than its kind usually does."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from accounting.pricing import micros_to_usd
from accounting.store.base import WorkflowState
from gateway.errors import GatewayError
from gateway.guardrails import anomaly_of
from gateway.request import WORKFLOW_ID
from gateway.runtime import Runtime


def usd(micros: int | None) -> str | None:
    return None if micros is None else micros_to_usd(micros)


def status_of(rt: Runtime, wf: WorkflowState) -> dict[str, Any]:
    now = rt.wall()
    status = wf.status
    if status == "running" and now - wf.last_seen_at > rt.rules.workflows.stall_after_s:
        status = "stalled"  # type: ignore[assignment]
    return {
        "id": wf.workflow_id,
        "key": wf.key,
        "name": wf.name,
        "status": status,
        "budget_usd": usd(wf.cap_micros),
        "budget_tokens": wf.cap_tokens,
        "spent_usd": micros_to_usd(wf.spent_micros),
        "reserved_usd": micros_to_usd(wf.reserved_micros),
        "remaining_usd": usd(wf.remaining_micros),
        "tokens": {"total": wf.tokens_spent, "reserved": wf.tokens_reserved, **wf.tokens_by_kind},
        "calls": wf.calls,
        "requests": wf.requests,
        "retries": wf.retries,
        "fallbacks": wf.fallbacks,
        "partial_streams": wf.partial_streams,
        "expired_holds": wf.expired_holds,
        "expired_holds_usd": micros_to_usd(wf.expired_micros),
        "started_at": wf.started_at,
        "last_seen_at": wf.last_seen_at,
        "last_heartbeat_at": wf.heartbeat_at or wf.last_seen_at,
        "current_step": wf.step,
        "progress": wf.progress,
        "completed_at": wf.completed_at,
        "outcome": wf.outcome,
        "error": wf.error,
        "cancelled_at": wf.cancelled_at,
        "stop_reason": wf.stop_reason,
        "limits": _limits(rt, wf, now),
        "cost_anomaly": _anomaly(rt, wf),
    }


def _limits(rt: Runtime, wf: WorkflowState, now: float) -> dict[str, Any]:
    tokens_left = None
    if wf.cap_tokens is not None:
        tokens_left = max(0, wf.cap_tokens - wf.tokens_spent - wf.tokens_reserved)
    return {
        "budget_usd": {"limit": usd(wf.cap_micros), "left": usd(wf.remaining_micros)},
        "budget_tokens": {"limit": wf.cap_tokens, "left": tokens_left},
        "deadline": {
            "at": wf.deadline_at,
            "seconds_left": None if wf.deadline_at is None else max(0.0, wf.deadline_at - now),
        },
        "calls": {
            "limit": wf.max_calls,
            "left": None if wf.max_calls is None else max(0, wf.max_calls - wf.requests),
        },
        "identical_calls": {"limit": rt.rules.workflows.max_identical_calls or None},
    }


def _anomaly(rt: Runtime, wf: WorkflowState) -> dict[str, Any] | None:
    median = anomaly_of(rt, wf)
    if median is None:
        return None
    factor = rt.rules.workflows.cost_anomaly_factor
    return {"kind_median_usd": micros_to_usd(median), "factor": factor}


def not_found(workflow_id: str) -> GatewayError:
    shown = workflow_id if len(workflow_id) <= 200 else workflow_id[:200] + "..."
    return GatewayError(404, "workflow_not_found", f"no workflow {shown!r} under this key")


def workflow_id_of(request: Request) -> str:
    """The path's workflow id; one no request could have named is not looked up."""
    workflow_id: str = request.path_params["workflow_id"]
    if not WORKFLOW_ID.match(workflow_id):
        raise not_found(workflow_id)
    return workflow_id
