"""The one owner of the end of a request.

Whatever path a request takes (a JSON answer, an error, a replay, a stream that ends
cleanly, breaks, loses its client or is cut by the shutdown), its end is finished here,
exactly once: attempts still open are settled by their safe rule, the idempotency
claim is stored or released, the metrics, access log and span are written and the
in-flight gauge goes down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from gateway import idempotency, key_limits
from gateway.context import Ctx, response_headers
from gateway.errors import GatewayError
from gateway.idempotency import Claim
from gateway.runtime import Runtime
from gateway.settlement import settle_leftovers
from gateway.telemetry import access
from gateway.translate.errors import render
from policies.idempotency import Record

JSON = "application/json"


class Exchange:
    __slots__ = ("_inflight", "_task", "claim", "ctx", "cut_short", "finished", "on_cut", "rt")

    def __init__(self, rt: Runtime, ctx: Ctx) -> None:
        self.rt = rt
        self.ctx = ctx
        self.claim: Claim | None = None
        self.finished = False
        self.cut_short = False  # its workflow was cancelled while it ran
        self.on_cut: Callable[[], None] | None = None  # how a running stream is cut
        self._inflight = False
        self._task: asyncio.Task[Any] | None = None

    def begin(self, claim: Claim | None) -> None:
        """The request is going upstream: it holds ``claim``, counts as in flight, and
        a cancel of its workflow can cut it."""
        self.claim = claim
        self._inflight = True
        self.rt.inflight.start(self.rt.labels.model(self.ctx.model), self.ctx.request_id)
        if self.ctx.scope.workflow_id is not None:
            self._task = asyncio.current_task()
            self.rt.cuts.add(self._pair, self.cut)

    @property
    def _pair(self) -> tuple[str, str]:
        return self.ctx.scope.key, self.ctx.scope.workflow_id or ""

    def cut(self) -> None:
        """Its workflow was cancelled: a stream ends with an error event, a request
        still waiting for its answer is cancelled (and answered 403)."""
        if self.on_cut is not None:
            self.cut_short = True
            self.on_cut()
        elif self._task is not None and not self.finished and self.ctx.attempts_open:
            self.cut_short = True  # (between attempts the next reservation refuses it)
            self._task.cancel()

    async def finish(
        self, status: int, code: str | None = None, record: Record | None = None
    ) -> None:
        if self.finished:
            return
        self.finished = True
        rt, ctx = self.rt, self.ctx
        if self._task is not None:
            rt.cuts.remove(self._pair, self.cut)
        try:
            await settle_leftovers(rt, ctx)
            await key_limits.release(rt, ctx)
            await idempotency.finish(rt, self.claim, record)
        finally:
            access.finish(rt, ctx, status, code)
            if self._inflight:
                rt.inflight.stop(rt.labels.model(ctx.model), ctx.request_id)

    async def fail(self, error: GatewayError) -> Response:
        """Finish with ``error`` and answer it."""
        await self.finish(error.status, error.code)
        headers = {**response_headers(self.ctx), **error.headers}
        return Response(render(self.ctx.endpoint, error), error.status, headers, media_type=JSON)
