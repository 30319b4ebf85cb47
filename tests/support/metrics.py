"""Prometheus scrapes for tests: metrics are process-wide, so tests compare deltas."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gateway import Gateway

Sample = tuple[str, tuple[tuple[str, str], ...]]


def scrape(gw: Gateway) -> dict[Sample, float]:
    text = httpx.get(f"{gw.url}/metrics").text
    samples: dict[Sample, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def delta(
    before: dict[Sample, float], after: dict[Sample, float], name: str, **labels: str
) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)
