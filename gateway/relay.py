"""Provider chunks -> the client's SSE stream.

The stream is committed when its first event reaches the client; until then the
pipeline may retry or fall back, after it never. A failure after the commit ends the
stream with an SSE error event (which the OpenAI SDK raises), never a clean finish.
The client going away cancels the upstream call at once. Whatever happens, the
attempt is settled with what was really consumed, and a final SSE comment carries
the cost (``: spendgate cost_usd=...``), since headers left before it was known.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from starlette.types import Receive, Scope, Send

from accounting.errors import AccountingError
from accounting.pricing import micros_to_usd
from gateway import idempotency
from gateway.context import Ctx, StreamAnswer
from gateway.errors import GatewayError
from gateway.idempotency import Claim, record_headers
from gateway.runtime import Runtime
from gateway.settlement import settle_stream
from gateway.telemetry import access, metrics
from gateway.telemetry import logging as log
from policies.errors import UpstreamError
from policies.idempotency import Record

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def error_event(error: GatewayError) -> bytes:
    return b"data: " + error.body() + b"\n\n"


class SSEResponse:
    def __init__(
        self,
        rt: Runtime,
        ctx: Ctx,
        answer: StreamAnswer,
        headers: dict[str, str],
        claim: Claim | None = None,
    ) -> None:
        self.rt = rt
        self.claim = claim
        self.headers = headers
        self.frames: list[bytes] | None = [] if claim is not None else None
        self.ctx = ctx
        self.answer = answer
        self.raw_headers = SSE_HEADERS + [(k.encode(), v.encode()) for k, v in headers.items()]
        self.client_gone = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cut: str | None = "shutdown"
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            cut = await self._race(receive, send)
        finally:
            await self._finish(send, cut)

    async def _race(self, receive: Receive, send: Send) -> str | None:
        pump = asyncio.ensure_future(self._pump(send))
        watch = asyncio.ensure_future(_disconnect(receive))
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, watch):
                task.cancel()
        if pump.done() and not pump.cancelled():
            return pump.result()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        self.client_gone = True
        return "client_disconnect"

    async def _pump(self, send: Send) -> str | None:
        loop_deadline = asyncio.get_running_loop().time() + self.ctx.deadline.remaining()
        try:
            await self._send(send, self.answer.first)
            async with asyncio.timeout_at(loop_deadline):
                async for chunk in self.answer.chunks:
                    await self._send(send, chunk)
            return None
        except UpstreamError as exc:
            log.event(
                "stream_broken",
                request_id=self.ctx.request_id,
                error=exc.message,
                model=self.answer.model.name,
            )
            await _body(send, error_event(GatewayError(502, "upstream_error", exc.message)))
            return "upstream_error"
        except TimeoutError:
            await _body(
                send,
                error_event(
                    GatewayError(
                        504, "deadline_exceeded", "the request's deadline passed mid-stream"
                    )
                ),
            )
            return "deadline"
        except OSError:
            self.client_gone = True
            return "client_disconnect"

    async def _send(self, send: Send, chunk: bytes) -> None:
        if self.frames is not None:
            self.frames.append(chunk)
        await _body(send, chunk)

    async def _finish(self, send: Send, cut: str | None) -> None:
        await asyncio.shield(self.rt.track(self._settle(cut)))
        if not self.client_gone:
            tail = orjson.dumps(
                {"cost_usd": micros_to_usd(self.ctx.cost_micros), "partial": self.ctx.partial}
            )
            with contextlib.suppress(OSError):
                await _body(send, b": spendgate " + tail + b"\n\n", more=False)

    async def _settle(self, cut: str | None) -> None:
        await self.answer.stream.aclose()
        try:
            await settle_stream(self.rt, self.ctx, self.answer, cut=cut)
        except AccountingError as exc:
            metrics.STORE_ERRORS.labels("settle").inc()
            log.event("settle_failed", level=40, request_id=self.ctx.request_id, error=str(exc))
        access.finish(self.rt, self.ctx, 200, cut)
        self.rt.inflight.stop(self.rt.labels.model(self.ctx.model), self.ctx.request_id)
        record = None
        if cut is None and self.frames is not None:
            record = Record(200, record_headers(self.headers), frames=self.frames, stream=True)
        await idempotency.finish(self.rt, self.claim, record)


async def _body(send: Send, data: bytes, *, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
