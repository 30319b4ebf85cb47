"""Structured JSON logs: one access line per request, plus events. Never a secret."""

from __future__ import annotations

import atexit
import logging
import sys
from logging.handlers import QueueHandler, QueueListener
from queue import SimpleQueue
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


class _Enqueue(QueueHandler):
    """Hands records to the writer thread as they are: formatting and the write to
    stderr (blocking I/O) happen off the event loop."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    queue: SimpleQueue[logging.LogRecord] = SimpleQueue()
    listener = QueueListener(queue, handler, respect_handler_level=False)
    listener.start()
    atexit.register(listener.stop)
    root = logging.getLogger("spendgate")
    root.handlers[:] = [_Enqueue(queue)]
    root.setLevel(level)
    root.propagate = False


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    EVENTS.log(level, name, extra={"fields": {"event": name, **fields}})


def access(fields: dict[str, Any]) -> None:
    if ACCESS.isEnabledFor(logging.INFO):
        # Built directly: Logger.info would walk the stack to find its caller.
        record = logging.LogRecord("spendgate.access", logging.INFO, "", 0, "request", None, None)
        record.fields = fields
        ACCESS.handle(record)
