"""Structured JSON logs: one access line per request, plus events. Never a secret."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

ACCESS = logging.getLogger("spendgate.access")
EVENTS = logging.getLogger("spendgate.events")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
        return orjson.dumps(entry, default=str).decode()


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("spendgate")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    EVENTS.log(level, name, extra={"fields": {"event": name, **fields}})


def access(fields: dict[str, Any]) -> None:
    if ACCESS.isEnabledFor(logging.INFO):
        ACCESS.info("request", extra={"fields": fields})


def now_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
