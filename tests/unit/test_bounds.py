"""Bounds on what a client or an upstream can make the gateway hold or compute."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.counting import Counter
from gateway.providers.base import KEPT_TEXT_CHARS, StreamState
from gateway.telemetry.tracing import exporters_from_env, provider_from_env


def test_stream_text_is_kept_up_to_a_cap_and_only_measured_beyond() -> None:
    state = StreamState()
    piece = "ab" * 1000  # 2000 characters
    for _ in range(KEPT_TEXT_CHARS // 2000 + 500):
        state.add_text(piece)
    assert KEPT_TEXT_CHARS <= state.kept_chars < KEPT_TEXT_CHARS + 2000
    assert len(state.received_text()) == state.kept_chars
    assert state.overflow_bytes >= 499 * 2000  # every byte beyond the cap still counts


async def test_the_counting_pool_refuses_work_beyond_its_cap() -> None:
    counter = Counter(workers=1, max_pending=2)
    release = threading.Event()
    try:
        blocked = [asyncio.ensure_future(counter.run(release.wait)) for _ in range(2)]
        await asyncio.sleep(0)
        assert await counter.run(lambda: 1) is None  # busy: the caller uses its bound
        release.set()
        assert await asyncio.gather(*blocked) == [True, True]
        assert await counter.run(lambda: 7) == 7
    finally:
        release.set()
        counter.close()


def test_trace_exporters_from_the_environment() -> None:
    assert exporters_from_env({}) == set()
    assert exporters_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == {"otlp"}
    assert exporters_from_env({"OTEL_TRACES_EXPORTER": "console"}) == {"console"}
    assert exporters_from_env({"OTEL_TRACES_EXPORTER": "none"}) == set()
    with pytest.raises(ValueError, match="zipkin"):
        exporters_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
    provider = provider_from_env({"OTEL_TRACES_EXPORTER": "console"})
    assert provider is not None
    provider.shutdown()
