"""No secret ever echoed: an upstream that echoes the request's headers (the provider
key among them) through every path it has, and every output is searched for the key."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.telemetry.logging import JsonFormatter
from tests.support.gateway import KEY_RESEARCH, PROVIDER_KEY, run_gateway

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
# every path an upstream's words take to the client, for both provider APIs
SCRIPTS = [
    ("gpt-4o-mini", "gpt-4o-mini", {"status": 400, "echo_headers": True}, False),
    ("gpt-4o-mini", "gpt-4o-mini", {"status": 422, "echo_headers": True}, True),
    ("gpt-4o-mini", "gpt-4o-mini", {"status": 500, "echo_headers": True}, False),
    ("gpt-4o-mini", "gpt-4o-mini", {"error_after_chunks": 3, "echo_headers": True}, True),
    ("claude-sonnet", "claude-sonnet-4-5", {"status": 400, "echo_headers": True}, False),
    ("claude-sonnet", "claude-sonnet-4-5", {"status": 529, "echo_headers": True}, True),
    ("claude-sonnet", "claude-sonnet-4-5", {"error_after_chunks": 2, "echo_headers": True}, True),
]


def test_the_provider_key_never_leaves_the_gateway(
    config: dict[str, Any], mock: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spendgate")
    spans = InMemorySpanExporter()
    tracer = TracerProvider()
    tracer.add_span_processor(SimpleSpanProcessor(spans))
    config["models"]["gpt-4o-mini"]["retry"] = {"max_attempts": 1}
    config["models"]["claude-sonnet"]["retry"] = {"max_attempts": 1}
    seen: list[str] = []
    with run_gateway(config, mock, tracer_provider=tracer) as gw:
        for n, (model, upstream, step, stream) in enumerate(SCRIPTS):
            gw.script(upstream, [step])
            body = {**CHAT, "model": model, "stream": stream}
            headers = {"authorization": f"Bearer {KEY_RESEARCH}", "idempotency-key": f"k{n}"}
            r = httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers, timeout=30)
            seen.append(f"{r.status_code} {dict(r.headers)} {r.text}")
        echoed = [rec for rec in gw.mock_stats()["requests"] if rec["authorization"]]
        assert len(echoed) == len(SCRIPTS)  # the mock did receive (and echo) the key
        seen.append(httpx.get(f"{gw.url}/metrics").text)
    formatter = JsonFormatter()
    seen += [formatter.format(record) for record in caplog.records]
    seen += [span.to_json() for span in spans.get_finished_spans()]
    store = Path(config["store"].removeprefix("sqlite:///"))
    seen += [
        path.read_bytes().decode("latin-1")
        for path in store.parent.glob(store.name + "*")
        if path.is_file()
    ]
    leaks = [
        text[max(0, text.find(PROVIDER_KEY) - 80) :][:200] for text in seen if PROVIDER_KEY in text
    ]
    assert not leaks
    assert any("request headers" in text for text in seen)  # the echoes did arrive, cleaned
