"""The path every provider request takes: record, authenticate, parse, pick the next
scripted step, wait or hang as scripted, then answer with a scripted error or let the
API generate its success."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from gateway.mock_provider.exchange import JSON_TYPE, Exchange, HeaderList, encode_headers
from gateway.mock_provider.generation import Plan, make_plan, requested_cap
from gateway.mock_provider.ratelimit import NO_LIMIT, RateLimit
from gateway.mock_provider.script import ScriptBook, Step
from gateway.mock_provider.stats import PENDING, RequestRecord, Stats


@dataclass(slots=True)
class Call:
    """One provider request being answered."""

    ex: Exchange
    record: RequestRecord
    step: Step
    body: dict[str, Any]
    prompt_tokens: int
    id_header: str
    prefill: str | None = None  # a final assistant message to continue
    extra: HeaderList = field(default_factory=list)  # the rate limit's headers

    @property
    def skip(self) -> int:
        """Words of the answer the prefill already holds (each word is one token)."""
        return len(self.prefill.split()) if self.prefill else 0

    def plan(self) -> Plan:
        """What a successful answer to this request contains."""
        cap = requested_cap(self.body)
        return make_plan(self.step, self.model, self.prompt_tokens, cap, self.skip)

    @property
    def model(self) -> str:
        return self.record.model or ""

    def echo(self) -> str:
        """The request's headers as text, as debug proxies echo them (``echo_headers``)."""
        if not self.step.echo_headers:
            return ""
        return " | request headers: " + "; ".join(f"{k}: {v}" for k, v in self.ex.headers.items())

    def headers(self, *extra: tuple[bytes, bytes]) -> HeaderList:
        """Response headers: the API's request id, the step's headers, then ``extra``."""
        own = (self.id_header.encode(), f"req_mock{self.record.id}".encode())
        return [own, *encode_headers(self.step.headers), *self.extra, *extra]


class ProviderApi(Protocol):
    id_header: str

    def credential(self, headers: dict[str, str]) -> str | None:
        """The credential header value to record (Authorization or x-api-key)."""

    def reject(self, headers: dict[str, str], body: Any) -> tuple[int, dict[str, Any]] | None:
        """An error answer when auth or the request shape is wrong, else None."""

    def prompt_tokens(self, body: dict[str, Any]) -> int: ...

    def error_body(self, status: int, prompt_tokens: int, step: Step) -> dict[str, Any]:
        """The provider-shaped default error body for a scripted ``status``."""

    def error_usage(self, prompt_tokens: int) -> dict[str, Any]: ...

    async def generate(self, call: Call) -> None:
        """Send a successful answer and fill in the record's tokens and outcome."""

    def abandoned_tokens(self, call: Call) -> int:
        """Completion tokens a real provider bills for a plain (non-streaming) answer
        whose client went away before it was sent: it generates the whole answer."""

    def prefill(self, body: dict[str, Any]) -> str | None:
        """The text of a final assistant message this API continues, if any."""

    def prefill_error(self, prefill: str, step: Step) -> dict[str, Any] | None:
        """The 400 body refusing a prefill (``reject_prefill``, or one this API never
        accepts), else None."""


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


async def handle(
    api: ProviderApi, ex: Exchange, scripts: ScriptBook, stats: Stats, rate: RateLimit | None = None
) -> None:
    """Serve one provider request and close its stats record however it ends."""
    record = stats.start(ex.path, ex.headers)
    try:
        await _serve(api, ex, record, scripts, stats, rate or NO_LIMIT)
    except asyncio.CancelledError:
        if record.outcome == PENDING:
            record.outcome = "cancelled"
        raise
    finally:
        ex.close()
        if record.outcome == PENDING:
            record.outcome = "error"  # the handler failed before deciding an outcome
        stats.finish(record)


async def _serve(
    api: ProviderApi,
    ex: Exchange,
    record: RequestRecord,
    scripts: ScriptBook,
    stats: Stats,
    rate: RateLimit,
) -> None:
    record.authorization = api.credential(ex.headers)
    raw = await ex.read_body()
    if raw is None:
        record.outcome = "cancelled"
        return
    body = _parse(raw)
    stats.identify(record, body)
    rejection = api.reject(ex.headers, body)
    if rejection is not None or not isinstance(body, dict):
        status, document = rejection or (400, {})
        record.status, record.outcome = status, "error"
        await ex.respond_json(status, document, [])
        return
    admitted, limit_headers, reset_s = rate.take(ex.path)
    if not admitted:
        record.status, record.outcome = 429, "rate_limited"
        retry = [*limit_headers, ("retry-after", str(max(1, math.ceil(reset_s))))]
        await ex.respond_json(429, api.error_body(429, 0, Step()), encode_headers(retry))
        return
    step = scripts.next_step(record.model)
    prefill = api.prefill(body)
    refused = api.prefill_error(prefill, step) if prefill is not None else None
    if refused is not None:
        record.status, record.outcome = 400, "error"
        await ex.respond_json(400, refused, [])
        return
    call = Call(ex, record, step, body, api.prompt_tokens(body), api.id_header, prefill)
    call.extra = encode_headers(limit_headers)
    await answer(api, call)


async def answer(api: ProviderApi, call: Call) -> None:
    """Apply the step's delay and hang, then a scripted error or a generated success."""
    step, record, ex = call.step, call.record, call.ex
    if not step.is_custom:
        record.prompt_tokens = call.prompt_tokens
    if step.delay_s and not await ex.pause(step.delay_s):
        record.outcome = "cancelled"
        if not call.body.get("stream") and not step.is_custom:
            record.completion_tokens = api.abandoned_tokens(call)
            record.outcome = "abandoned"
        return
    if step.hang:
        record.outcome = "hang"
        await ex.wait_disconnect()
        record.outcome = "cancelled"
        return
    if step.is_custom:
        await _scripted_answer(api, call)
        return
    await api.generate(call)


async def _scripted_answer(api: ProviderApi, call: Call) -> None:
    step, record = call.step, call.record
    status = step.status or 200
    body = step.body
    if body is None:
        body = api.error_body(status, call.prompt_tokens, step)
    if step.echo_headers and isinstance(body, dict):
        body = {**body, "request_headers": call.ex.headers, "echo": call.echo()}
    if step.include_usage_on_error:
        record.prompt_tokens = call.prompt_tokens
        if isinstance(body, dict) and "usage" not in body:
            body = {**body, "usage": api.error_usage(call.prompt_tokens)}
    payload = body.encode() if isinstance(body, str) else orjson.dumps(body)
    record.status = status
    record.outcome = "error" if status >= 400 else "ok"
    await call.ex.respond(status, payload, call.headers(JSON_TYPE))
