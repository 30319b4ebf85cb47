"""The one owner of the end of a request.

Whatever path a request takes (a JSON answer, an error, a replay, a stream that ends
cleanly, breaks, loses its client or is cut by the shutdown), its end is finished here,
exactly once: attempts still open are settled by their safe rule, the idempotency
claim is stored or released, the metrics, access log and span are written and the
in-flight gauge goes down.
"""

from __future__ import annotations

from starlette.responses import Response

from gateway import idempotency
from gateway.context import Ctx, response_headers
from gateway.errors import GatewayError
from gateway.idempotency import Claim
from gateway.runtime import Runtime
from gateway.settlement import settle_leftovers
from gateway.telemetry import access
from policies.idempotency import Record

JSON = "application/json"


class Exchange:
    __slots__ = ("_inflight", "claim", "ctx", "finished", "rt")

    def __init__(self, rt: Runtime, ctx: Ctx) -> None:
        self.rt = rt
        self.ctx = ctx
        self.claim: Claim | None = None
        self.finished = False
        self._inflight = False

    def begin(self, claim: Claim | None) -> None:
        """The request is going upstream: it holds ``claim`` and counts as in flight."""
        self.claim = claim
        self._inflight = True
        self.rt.inflight.start(self.rt.labels.model(self.ctx.model), self.ctx.request_id)

    async def finish(
        self, status: int, code: str | None = None, record: Record | None = None
    ) -> None:
        if self.finished:
            return
        self.finished = True
        rt, ctx = self.rt, self.ctx
        try:
            await settle_leftovers(rt, ctx)
            await idempotency.finish(rt, self.claim, record)
        finally:
            access.finish(rt, ctx, status, code)
            if self._inflight:
                rt.inflight.stop(rt.labels.model(ctx.model), ctx.request_id)

    async def fail(self, error: GatewayError) -> Response:
        """Finish with ``error`` and answer it."""
        await self.finish(error.status, error.code)
        headers = {**response_headers(self.ctx), **error.headers}
        return Response(error.body(), error.status, headers, media_type=JSON)
