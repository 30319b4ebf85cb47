"""The idempotency guard of the request path: replay | claim | conflict | wait.

A duplicate that arrives while the first request still runs waits for it (up to its
own deadline) and replays its answer, so an SDK that retried after a dropped
connection gets the one answer that was paid for. Past its deadline it gets 409 with
``Retry-After``. A holder that dies leaves a lease that runs out by itself; the next
request then runs once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.responses import Response

from accounting.errors import AccountingError
from gateway.context import Ctx
from gateway.errors import GatewayError, bad_request
from gateway.incoming import Incoming
from gateway.runtime import Runtime
from gateway.telemetry import logging as log
from gateway.telemetry import metrics
from policies.idempotency import InvalidKey, Record, derived_key, fingerprint, parse_key, scope

LEASE_MARGIN_S = 30.0
POLL_S = 0.1
REPLAY_HEADERS = ("content-type", "x-spendgate-model", "x-spendgate-attempts")


@dataclass
class Claim:
    key: str  # the gateway key (tenant) the record belongs to
    scope: str
    token: str
    done: bool = False


def key_of(rt: Runtime, request: Incoming, ctx: Ctx) -> str | None:
    raw = request.headers.get("idempotency-key")
    if raw is not None:
        try:
            return parse_key(raw)
        except InvalidKey as exc:
            raise bad_request(str(exc)) from None
    workflow, step = ctx.scope.workflow_id, ctx.scope.step
    if rt.rules.idempotency.derive_from_workflow_step and workflow and step:
        return derived_key(workflow, step)
    return None


async def begin(rt: Runtime, request: Incoming, ctx: Ctx) -> Response | Claim | None:
    """Claim the key, or answer from the store; None when the request has no key."""
    key = key_of(rt, request, ctx)
    if key is None:
        return None
    where = scope(ctx.principal.name, ctx.endpoint, key)
    print_ = fingerprint(ctx.body)
    while True:
        lease = max(ctx.deadline.remaining(), 0.0) + LEASE_MARGIN_S
        tenant = ctx.principal.name
        claim = await rt.store.idem_claim(tenant, where, print_, lease, rt.wall())
        if claim.outcome == "claimed" and claim.token is not None:
            return Claim(tenant, where, claim.token)
        if claim.outcome == "replay" and claim.record is not None:
            return replay(rt, ctx, Record.decode(claim.record))
        if claim.outcome == "conflict":
            raise GatewayError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was already used with a different request body; "
                "use a new key for a new request",
                should_retry=False,
            )
        await _wait_for_holder(rt, ctx, where)


async def _wait_for_holder(rt: Runtime, ctx: Ctx, where: str) -> None:
    if ctx.deadline.remaining() <= 0:
        raise GatewayError(
            409,
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still running; retry to get its answer",
            headers={"retry-after": "1"},
        )
    event = rt.idem_waiters.setdefault(where, asyncio.Event())
    try:
        await asyncio.wait_for(event.wait(), min(POLL_S, ctx.deadline.remaining()))
    except TimeoutError:
        return  # poll the store again: the holder may be another replica


async def finish(rt: Runtime, claim: Claim | None, record: Record | None) -> None:
    """Store the answer (when it may be stored and fits) or release the claim."""
    if claim is None or claim.done:
        return
    claim.done = True
    limits = rt.rules.idempotency
    if record is not None and record.size() > limits.max_record_bytes:
        log.event("idempotency_record_too_large", level=30, size=record.size())
        record = None
    try:
        if record is None:
            await rt.store.idem_release(claim.key, claim.scope, claim.token)
        else:
            await rt.store.idem_complete(
                claim.key, claim.scope, claim.token, record.encode(), limits.ttl_s, rt.wall()
            )
    except AccountingError as exc:  # the claim's lease will run out by itself
        log.event("idempotency_store_failed", level=40, error=str(exc))
    event = rt.idem_waiters.pop(claim.scope, None)
    if event is not None:
        event.set()


def replay(rt: Runtime, ctx: Ctx, record: Record) -> Response:
    metrics.REPLAYS.labels(rt.labels.model(record.headers.get("x-spendgate-model"))).inc()
    headers = {
        **record.headers,
        "idempotent-replayed": "true",
        "x-request-id": ctx.request_id,
        "x-spendgate-cost-usd": "0.000000",
    }
    ctx.served = record.headers.get("x-spendgate-model", ctx.model)
    if record.stream:
        return Response(
            b"".join(record.frames), record.status, headers, media_type="text/event-stream"
        )
    return Response(record.body, record.status, headers)


def record_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() in REPLAY_HEADERS}
