"""OpenTelemetry traces: a server span per request, a client span per upstream attempt.

Attributes follow the GenAI semantic conventions (``gen_ai.*``) plus spendgate's own
(``spendgate.*``). The caller's W3C ``traceparent`` is the parent of the request span,
and each attempt's context is passed to the upstream. The exporter is configured by
the standard ``OTEL_*`` variables (OTLP over HTTP, or the console); with none set,
tracing is off and costs nothing on the hot path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from accounting.usage import Usage

_PROPAGATOR = TraceContextTextMapPropagator()
OPERATIONS = {
    "chat": "chat",
    "embeddings": "embeddings",
    "responses": "responses",
    "messages": "chat",
}


def provider_from_env(environ: Mapping[str, str] | None = None) -> TracerProvider | None:
    """A tracer provider from the standard variables: ``OTEL_TRACES_EXPORTER`` (a comma
    list of ``otlp``, ``console``, ``none``) and ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``
    (which alone means ``otlp``). None when nothing asks for traces."""
    env = os.environ if environ is None else environ
    wanted = exporters_from_env(env)
    if not wanted:
        return None
    name = env.get("OTEL_SERVICE_NAME", "spendgate")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    if "otlp" in wanted:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if "console" in wanted:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    return provider


def exporters_from_env(environ: Mapping[str, str] | None = None) -> set[str]:
    """The trace exporters asked for; ValueError for one spendgate does not have."""
    env = os.environ if environ is None else environ
    wanted = {part.strip() for part in env.get("OTEL_TRACES_EXPORTER", "").split(",")} - {""}
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    if not wanted and endpoint:
        wanted = {"otlp"}
    unknown = wanted - {"otlp", "console", "none"}
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER: unsupported exporter {sorted(unknown)}; use otlp, console "
            "or none"
        )
    return wanted - {"none"}


class Tracing:
    def __init__(self, provider: TracerProvider | None) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("spendgate") if provider is not None else None

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def start_request(self, headers: Mapping[str, str], endpoint: str, model: str) -> Span | None:
        if self._tracer is None:
            return None
        parent = _PROPAGATOR.extract(dict(headers))
        return self._tracer.start_span(
            f"{OPERATIONS[endpoint]} {model}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "gen_ai.operation.name": OPERATIONS[endpoint],
                "gen_ai.request.model": model,
            },
        )

    def start_attempt(self, parent: Span | None, attributes: dict[str, Any]) -> Span | None:
        if self._tracer is None or parent is None:
            return None
        ctx = trace.set_span_in_context(parent)
        name = (
            f"{attributes.get('gen_ai.operation.name', 'chat')} "
            f"{attributes.get('gen_ai.request.model', '')}"
        )
        clean = {k: v for k, v in attributes.items() if v is not None}
        return self._tracer.start_span(name, context=ctx, kind=SpanKind.CLIENT, attributes=clean)

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


def inject(span: Span | None, headers: dict[str, str]) -> dict[str, str]:
    """Headers carrying ``span``'s context to the upstream (a copy when it changes)."""
    if span is None:
        return headers
    carrier = dict(headers)
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span, otel_context.Context()))
    return carrier


def end(span: Span | None, attributes: dict[str, Any], error: str | None = None) -> None:
    if span is None:
        return
    span.set_attributes({k: v for k, v in attributes.items() if v is not None})
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end()


def trace_id(span: Span | None) -> str | None:
    if span is None:
        return None
    return format(span.get_span_context().trace_id, "032x")


def usage_attributes(usage: Usage) -> dict[str, Any]:
    return {
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "spendgate.usage.cached_input_tokens": usage.cached_input_tokens,
        "spendgate.usage.partial_output_tokens": usage.partial_output_tokens,
    }
