"""Provider chunks -> the client's SSE stream.

The stream is committed when its first event reaches the client; until then the
pipeline may retry or fall back, after it never. A failure after the commit ends the
stream with an SSE error event (which the OpenAI SDK raises), never a clean finish;
so does the end of the shutdown's grace period. The client going away cancels the
upstream call at once.

The terminal event (``data: [DONE]`` or the error event) is sent only after the
attempt is settled in the store, so the workflow's status is exact the moment the
client has its last byte. Before it, an SSE comment carries the cost
(``: spendgate {"cost_usd": ..., "partial": ...}``), since headers left before it was
known.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from starlette.types import Receive, Scope, Send

from accounting.pricing import micros_to_usd
from gateway import continuation
from gateway.context import StreamAnswer
from gateway.errors import GatewayError
from gateway.exchange import Exchange
from gateway.idempotency import record_headers
from gateway.splice import Splice
from gateway.telemetry import logging as log
from gateway.telemetry import metrics
from gateway.translate import registry as translators
from gateway.translate.errors import stream_event
from policies.errors import UpstreamError
from policies.idempotency import Record

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
# The ends of a stream that we cut while the upstream still generated.
WE_CUT = frozenset(("shutdown", "cancelled", "client_disconnect", "deadline"))
SHUTDOWN = GatewayError(
    503, "shutting_down", "the gateway shut down mid-stream; the answer is incomplete"
)
CANCELLED = GatewayError(
    403,
    "workflow_cancelled",
    "the workflow was cancelled (POST /workflows/{id}/cancel): this stream was cut",
)


class _Broken(Exception):
    """The stream broke and could not be continued."""

    def __init__(self, cause: UpstreamError) -> None:
        super().__init__(cause.message)
        self.cause = cause


def error_event(error: GatewayError, api: str = "chat") -> bytes:
    return stream_event(api, error)


class SSEResponse:
    def __init__(self, ex: Exchange, answer: StreamAnswer, headers: dict[str, str]) -> None:
        self.ex = ex
        self.answer = answer
        self.headers = headers
        self.frames: list[bytes] | None = [] if ex.claim is not None else None
        self.recorded = 0
        self.raw_headers = SSE_HEADERS + [(k.encode(), v.encode()) for k, v in headers.items()]
        self.client_gone = False
        self.error: GatewayError | None = SHUTDOWN
        self._pump_task: asyncio.Future[str | None] | None = None
        ex.on_cut = self._cut
        options = ex.ctx.body.get("stream_options")
        self.splice = Splice(isinstance(options, dict) and options.get("include_usage") is True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cut: str | None = "shutdown"
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            cut = await self._race(receive, send)
        finally:
            # The end runs to completion even when this task is cancelled (shutdown):
            # the lifespan waits for tracked work before it closes the store.
            await asyncio.shield(self.ex.rt.track(self._finish(send, cut)))

    def _cut(self) -> None:
        """The workflow was cancelled: stop relaying (the upstream is closed at the end)."""
        if self._pump_task is not None:
            self._pump_task.cancel()

    async def _race(self, receive: Receive, send: Send) -> str | None:
        pump = self._pump_task = asyncio.ensure_future(self._pump(send))
        watch = asyncio.ensure_future(_disconnect(receive))
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, watch):
                task.cancel()
        if self.ex.cut_short:
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            self.error = CANCELLED
            return "cancelled"
        if pump.done() and not pump.cancelled():
            return pump.result()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        self.client_gone = True
        return "client_disconnect"

    async def _pump(self, send: Send) -> str | None:
        ctx = self.ex.ctx
        loop_deadline = asyncio.get_running_loop().time() + ctx.deadline.remaining()
        try:
            await self._send(send, self.answer.first)
            async with asyncio.timeout_at(loop_deadline):
                while not await self._relay(send):
                    pass
            self.error = None
            return None
        except _Broken as broken:
            log.event(
                "stream_broken",
                request_id=ctx.request_id,
                error=broken.cause.message,
                model=self.answer.attempt.model.name,
            )
            self.error = GatewayError(502, "upstream_error", broken.cause.message)
            return "upstream_error"
        except TimeoutError:
            self.error = GatewayError(
                504, "deadline_exceeded", "the request's deadline passed mid-stream"
            )
            return "deadline"
        except OSError:
            self.client_gone = True
            return "client_disconnect"

    async def _relay(self, send: Send) -> bool:
        """Relay the current upstream stream: True when it ended, False when it broke
        and was continued (relay again); _Broken when it could not be continued."""
        try:
            async for chunk in self.answer.chunks:
                await self._send(send, self.splice.out(chunk))
        except UpstreamError as exc:
            ex = self.ex
            resumed = await continuation.resume(ex.rt, ex.ctx, self.answer, exc, self.splice)
            if resumed is None:
                raise _Broken(exc) from None
            self.answer = resumed
            await self._send(send, self.splice.out(resumed.first))
            return False
        return True

    async def _send(self, send: Send, chunk: bytes) -> None:
        if self.frames is not None:
            self._record(chunk)
        await _body(send, chunk)

    def _record(self, chunk: bytes) -> None:
        """Keep the frames for the idempotency record, up to its limit: past it the
        answer will not be stored, so nothing more is kept (at once, not at the end)."""
        assert self.frames is not None
        self.recorded += len(chunk)
        if self.recorded > self.ex.rt.rules.idempotency.max_record_bytes:
            self.frames = None
            log.event("idempotency_record_too_large", level=30, size=self.recorded)
            return
        self.frames.append(chunk)

    async def _finish(self, send: Send, cut: str | None) -> None:
        """Finish the exchange (which settles the attempt), then the last bytes."""
        ex, answer = self.ex, self.answer
        # A finished stream waits a moment for its message's end (to keep the upstream
        # connection) while it is settled; a cut one is closed first, so that what had
        # already arrived is counted.
        closing = asyncio.ensure_future(answer.stream.aclose(stop=cut in WE_CUT))
        if not answer.stream.state.done:
            await closing
        _observe(answer, cut)
        if self.error is None:
            terminal = translators.terminal(answer.stream)
        else:
            terminal = error_event(self.error, ex.ctx.endpoint)
        record = None
        if cut is None and self.frames is not None:
            frames = [*self.frames, terminal]
            record = Record(200, record_headers(self.headers), frames=frames, stream=True)
        await ex.finish(200, cut, record)
        if not self.client_gone:
            tail = orjson.dumps(
                {"cost_usd": micros_to_usd(ex.ctx.cost_micros), "partial": ex.ctx.partial}
            )
            with contextlib.suppress(OSError):
                await _body(send, b": spendgate " + tail + b"\n\n" + terminal, more=False)
        await closing


def _observe(answer: StreamAnswer, cut: str | None) -> None:
    model = answer.attempt.model.name
    for kind in answer.stream.state.anomalies:
        metrics.STREAM_ANOMALIES.labels(model, kind).inc()
    if cut is not None:
        metrics.PARTIAL_STREAMS.labels(model, cut).inc()


async def _body(send: Send, data: bytes, *, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
