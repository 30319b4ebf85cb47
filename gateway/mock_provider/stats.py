"""What the mock provider really received and really sent: the truth tests compare to.

Records are kept for the most recent ``MAX_RECORDS`` requests; per-model totals cover
every request since the last reset. Token counts are those actually sent to the client:
a stream cut off after N content chunks counts only the tokens of those N chunks.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MAX_RECORDS = 5000

# Received headers copied into each record, when present.
RECORDED_HEADERS = (
    "x-request-id",
    "traceparent",
    "x-stainless-retry-count",
    "idempotency-key",
    "x-should-retry",
    "anthropic-version",
    "anthropic-beta",
)

PENDING = "pending"


@dataclass(slots=True)
class RequestRecord:
    id: int
    path: str
    started: float
    model: str | None = None
    stream: bool = False
    ended: float | None = None
    status: int | None = None
    outcome: str = PENDING
    chunks_sent: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    authorization: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    epoch: int = 0  # the reset generation the record belongs to

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "model": self.model,
            "stream": self.stream,
            "started": self.started,
            "ended": self.ended,
            "status": self.status,
            "outcome": self.outcome,
            "chunks_sent": self.chunks_sent,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "authorization": self.authorization,
            "headers": self.headers,
            "body": self.body,
        }


@dataclass(slots=True)
class ModelTotals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class Stats:
    """Request records (bounded) and per-model totals. Used from one event loop only."""

    __slots__ = ("_by_model", "_epoch", "_next_id", "_records", "in_flight", "max_in_flight")

    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=max_records)
        self._by_model: dict[str, ModelTotals] = {}
        self._next_id = 0
        self._epoch = 0
        self.in_flight = 0  # requests being answered now
        self.max_in_flight = 0  # the most at once since the last reset

    def start(self, path: str, headers: dict[str, str]) -> RequestRecord:
        """Open a record for a request that just arrived (``headers`` lower-cased)."""
        self._next_id += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        record = RequestRecord(id=self._next_id, path=path, started=time.time(), epoch=self._epoch)
        record.headers = {name: headers[name] for name in RECORDED_HEADERS if name in headers}
        self._records.append(record)
        return record

    def identify(self, record: RequestRecord, body: Any) -> None:
        """Attach the parsed body and count the request under its model."""
        record.body = body
        if isinstance(body, dict):
            model = body.get("model")
            record.model = model if isinstance(model, str) else None
            record.stream = body.get("stream") is True
        if record.model is not None and record.epoch == self._epoch:
            self._totals(record.model).requests += 1

    def finish(self, record: RequestRecord, outcome: str | None = None) -> None:
        """Close a record: set its end time and outcome, add its tokens to the totals."""
        if record.ended is not None:
            return
        record.ended = time.time()
        self.in_flight -= 1
        if outcome is not None:
            record.outcome = outcome
        if record.model is None or record.epoch != self._epoch:
            return  # no model to count under, or a request from before the last reset
        totals = self._totals(record.model)
        totals.prompt_tokens += record.prompt_tokens
        totals.completion_tokens += record.completion_tokens

    def _totals(self, model: str) -> ModelTotals:
        totals = self._by_model.get(model)
        if totals is None:
            totals = self._by_model[model] = ModelTotals()
        return totals

    def reset(self) -> None:
        self._records.clear()
        self._by_model.clear()
        self._epoch += 1
        self.max_in_flight = self.in_flight

    def snapshot(self, model: str | None = None, since: int = 0) -> dict[str, Any]:
        """The stats document; optionally only records of ``model`` with id > ``since``."""
        records = [
            record.as_dict()
            for record in self._records
            if record.id > since and (model is None or record.model == model)
        ]
        by_model = {name: totals.as_dict() for name, totals in self._by_model.items()}
        limited = sum(1 for record in self._records if record.outcome == "rate_limited")
        return {
            "requests": records,
            "by_model": by_model,
            "max_concurrency": self.max_in_flight,
            "rate_limited": limited,
        }
