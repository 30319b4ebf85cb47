"""What an operator sees: metrics after a scripted scenario, spans, logs, bounded series."""

from __future__ import annotations

import asyncio
import io
import logging
import random
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.telemetry.logging import JsonFormatter
from tests.flows.test_budgets import MESSAGES, priced
from tests.support.clock import FakeClock
from tests.support.gateway import (
    ADMIN_KEY,
    KEY_OTHER,
    KEY_RESEARCH,
    PROVIDER_KEY,
    Gateway,
    run_gateway,
)
from tests.support.metrics import delta, scrape


def chat(
    gw: Gateway, model: str, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    with gw.client() as c:
        return c.post(
            "/v1/chat/completions",
            json={"model": model, "messages": MESSAGES, "max_tokens": 20, **body},
            headers=headers or {},
        )


def test_scenario_moves_every_counter_by_the_right_amount(
    config: dict[str, Any], mock: str
) -> None:
    config = priced(config)
    config["models"]["gpt-4o"]["breaker"] = {"fail_max": 1, "reset_timeout_s": 60}
    config["models"]["gpt-4o"]["retry"] = {"max_attempts": 1}
    with run_gateway(config, mock, clock=FakeClock()) as gw:
        before = scrape(gw)
        assert chat(gw, "gpt-4o-mini").status_code == 200  # success
        gw.script("gpt-4o-mini", [{"status": 503}])
        assert chat(gw, "gpt-4o-mini").status_code == 200  # one retry
        gw.script("gpt-4o", [], default={"status": 500})
        assert chat(gw, "gpt-4o").headers["x-spendgate-model"] == "claude-sonnet"  # fallback
        assert chat(gw, "gpt-4o").headers["x-spendgate-model"] == "claude-sonnet"  # open
        assert (
            chat(
                gw, "gpt-4o-mini", {"x-workflow-id": "w", "x-workflow-budget-usd": "0.001"}
            ).status_code
            == 402
        )
        gw.script("gpt-4o-mini", [{"reset_after_chunks": 3}])
        with httpx.stream(
            "POST",
            f"{gw.url}/v1/chat/completions",
            headers={"authorization": f"Bearer {KEY_RESEARCH}"},
            json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
        ) as r:
            r.read()
        chat(gw, "gpt-4o-mini", {"idempotency-key": "k1"})
        assert (
            chat(gw, "gpt-4o-mini", {"idempotency-key": "k1"}).headers["idempotent-replayed"]
            == "true"
        )
        after = scrape(gw)

    def d(name: str, **labels: str) -> float:
        return delta(before, after, name, **labels)

    assert d("spendgate_requests_total", model="gpt-4o-mini", status="200") == 5
    assert d("spendgate_requests_total", model="gpt-4o", status="200") == 2
    assert d("spendgate_requests_total", model="gpt-4o-mini", status="402") == 1
    assert d("spendgate_retries_total", model="gpt-4o-mini", reason="server_error") == 1
    assert d("spendgate_upstream_attempts_total", model="gpt-4o-mini", outcome="server_error") == 1
    assert d("spendgate_upstream_attempts_total", model="gpt-4o", outcome="server_error") == 1
    assert (
        d(
            "spendgate_fallbacks_total",
            from_model="gpt-4o",
            to_model="claude-sonnet",
            reason="server_error",
        )
        == 1
    )
    assert (
        d(
            "spendgate_fallbacks_total",
            from_model="gpt-4o",
            to_model="claude-sonnet",
            reason="breaker_open",
        )
        == 1
    )
    assert after[("spendgate_breaker_state", (("model", "gpt-4o"),))] == 2
    assert d("spendgate_breaker_transitions_total", model="gpt-4o", to_state="open") == 1
    assert d("spendgate_budget_rejections_total", scope="workflow") == 1
    assert d("spendgate_partial_streams_total", model="gpt-4o-mini", reason="upstream_error") == 1
    assert d("spendgate_idempotent_replays_total", model="gpt-4o-mini") == 1
    assert d("spendgate_tokens_total", model="gpt-4o-mini", kind="partial_output") == 3
    assert d("spendgate_tokens_total", model="gpt-4o-mini", kind="output") == 60
    assert d("spendgate_cost_usd_total", model="gpt-4o-mini", key="research") == pytest.approx(
        (3 * 27 + 7 + 3) * 0.001
    )
    assert d("spendgate_request_duration_seconds_count", model="gpt-4o-mini") == 6
    assert d("spendgate_time_to_first_token_seconds_count", model="gpt-4o-mini") == 1


def test_workflow_cost_is_observed_on_completion(config: dict[str, Any], mock: str) -> None:
    with run_gateway(priced(config), mock) as gw:
        before = scrape(gw)
        chat(gw, "gpt-4o-mini", {"x-workflow-id": "done"})
        with gw.client() as c:
            c.post("/workflows/done/complete")
            c.post("/workflows/done/complete")  # observed once
        after = scrape(gw)
    observed = delta(before, after, "spendgate_workflow_cost_usd_count", workflow="other")
    assert observed == 1  # no X-Workflow-Name: the bounded "other" kind
    total = delta(before, after, "spendgate_workflow_cost_usd_sum", workflow="other")
    assert total == pytest.approx(0.027)


async def _random_traffic(gw: Gateway, n: int, seed: int) -> None:
    rng = random.Random(seed)
    limit = asyncio.Semaphore(32)
    async with httpx.AsyncClient(
        base_url=gw.url, timeout=30, headers={"authorization": f"Bearer {KEY_RESEARCH}"}
    ) as client:

        async def one(i: int) -> None:
            valid = i % 10 == 0
            model = "gpt-4o-mini" if valid else f"model-{rng.getrandbits(48):x}"
            async with limit:
                await client.post(
                    "/v1/chat/completions",
                    json={"model": model, "messages": MESSAGES, "max_tokens": 5},
                    headers={
                        "x-workflow-id": f"wf-{rng.getrandbits(64):x}",
                        "x-workflow-step": f"step-{i}",
                    },
                )

        await asyncio.gather(*[one(i) for i in range(n)])


def test_random_models_and_workflow_ids_leave_series_bounded(gateway: Gateway) -> None:
    asyncio.run(_random_traffic(gateway, 200, seed=7))
    series_after_some = set(scrape(gateway))
    asyncio.run(_random_traffic(gateway, 800, seed=8))  # other names, no new series
    series_after_more = set(scrape(gateway))
    assert series_after_more == series_after_some
    assert not any(
        "wf-" in str(labels) or "model-" in str(labels) for _, labels in series_after_more
    )


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def test_spans_per_request_and_attempt_with_the_callers_trace(
    config: dict[str, Any], mock: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with run_gateway(config, mock, tracer_provider=provider) as gw:
        gw.script("gpt-4o-mini", [{"status": 429, "headers": {"retry-after-ms": "10"}}])
        r = chat(
            gw,
            "gpt-4o-mini",
            {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "x-workflow-id": "wf-t"},
        )
        assert r.status_code == 200
        upstream = [rec["headers"]["traceparent"] for rec in gw.mock_stats()["requests"]]
    finished = exporter.get_finished_spans()
    [server] = [s for s in finished if s.kind.name == "SERVER"]
    attempts = [s for s in finished if s.kind.name == "CLIENT"]
    assert len(attempts) == 2
    assert all(
        s.parent is not None and s.parent.span_id == server.context.span_id for s in attempts
    )
    assert format(server.context.trace_id, "032x") == trace_id
    assert all(tp.split("-")[1] == trace_id for tp in upstream) and len(upstream) == 2
    attrs = dict(server.attributes or {})
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.usage.output_tokens"] == 20 and attrs["gen_ai.usage.input_tokens"] == 7
    assert attrs["spendgate.workflow_id"] == "wf-t" and attrs["spendgate.attempts"] == 2
    first, second = sorted(attempts, key=lambda s: s.start_time or 0)
    assert dict(first.attributes or {})["spendgate.outcome"] == "rate_limited"
    assert dict(second.attributes or {})["spendgate.retry_reason"] == "rate_limited"
    assert dict(second.attributes or {})["gen_ai.system"] == "openai"


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("spendgate")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield buffer
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_secrets_never_appear_in_logs_metrics_or_errors(
    config: dict[str, Any],
    mock: str,
    captured_logs: io.StringIO,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    sentinels = [PROVIDER_KEY, KEY_RESEARCH, KEY_OTHER, ADMIN_KEY]
    bodies: list[str] = []
    with run_gateway(priced(config), mock, tracer_provider=provider) as gw:
        gw.script(
            "gpt-4o-mini",
            [
                {"status": 401, "body": {"error": {"message": f"bad key {PROVIDER_KEY}"}}},
                {"status": 500},
                {"status": 500},
                {"status": 500},
                {"status": 400, "body": {"error": {"message": "nope"}}},
                {"reset_after_chunks": 2},
            ],
        )
        for _ in range(3):
            bodies.append(chat(gw, "gpt-4o-mini").text)
        bodies.append(
            chat(gw, "gpt-4o-mini", {"x-workflow-id": "w", "x-workflow-budget-usd": "0.0001"}).text
        )
        with httpx.stream(
            "POST",
            f"{gw.url}/v1/chat/completions",
            headers={"authorization": f"Bearer {KEY_RESEARCH}"},
            json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
        ) as r:
            bodies.append(r.read().decode())
        bodies.append(
            httpx.post(
                f"{gw.url}/v1/chat/completions",
                json={},
                headers={"authorization": f"Bearer {KEY_RESEARCH}x"},
            ).text
        )
        bodies.append(
            httpx.get(f"{gw.url}/admin/breakers", headers={"authorization": "Bearer nope"}).text
        )
        bodies.append(httpx.get(f"{gw.url}/metrics").text)
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY_RESEARCH, max_retries=0)
        bodies.append(str(client.models.list().model_dump()))
    logs = captured_logs.getvalue()
    span_text = str([(s.name, dict(s.attributes or {})) for s in exporter.get_finished_spans()])
    assert '"msg":"request"' in logs and "request_id" in logs
    for secret in sentinels:
        assert secret not in logs
        assert secret not in span_text
        assert all(secret not in body for body in bodies)
