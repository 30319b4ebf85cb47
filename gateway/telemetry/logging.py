"""Structured JSON logs: one access line per request, plus events. Never a secret."""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import threading
import time
from logging.handlers import QueueHandler, QueueListener
from queue import SimpleQueue
from typing import Any, TextIO

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
    """JSON logs to stderr through one writer thread; again (the app factory after the
    command): only the level changes."""
    global _lines
    root = logging.getLogger("spendgate")
    if _lines is not None:
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    queue: SimpleQueue[logging.LogRecord] = SimpleQueue()
    listener = QueueListener(queue, handler, respect_handler_level=False)
    listener.start()
    atexit.register(listener.stop)
    root.handlers[:] = [_Enqueue(queue)]
    root.setLevel(level)
    root.propagate = False
    _lines = AccessLines(sys.stderr)
    atexit.register(_lines.close)


class AccessLines:
    """The access log's fast path: each line serialised on the loop (the same JSON as
    ``JsonFormatter``), the lines of a short window (``delay_s``) handed to a writer
    thread at once, which writes them to ``stream`` (blocking I/O stays off the loop,
    and the writer wakes a few dozen times a second, not once per request)."""

    DELAY_S = 0.02
    MAX_LINES = 512  # a window that fills up is handed over at once

    def __init__(self, stream: TextIO, delay_s: float = DELAY_S) -> None:
        self._stream = stream
        self._delay_s = delay_s
        self._batch: list[bytes] = []
        self._queue: SimpleQueue[bytes | threading.Event | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="spendgate-access", daemon=True)
        self._thread.start()

    def add(self, line: bytes) -> None:
        self._batch.append(line)
        if len(self._batch) > 1:
            if len(self._batch) >= self.MAX_LINES:
                self.flush()
            return  # the window's hand-off is already scheduled
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: now
            self.flush()
            return
        if self._delay_s > 0:
            loop.call_later(self._delay_s, self.flush)
        else:  # the end of this loop iteration
            loop.call_soon(self.flush)

    def flush(self) -> None:
        if self._batch:
            self._queue.put(b"".join(self._batch))
            self._batch = []

    def sync(self, timeout_s: float = 5.0) -> None:
        """Hand over the open window and wait until the writer has written it (at
        shutdown: a process ended by its signal runs no exit handlers)."""
        self.flush()
        written = threading.Event()
        self._queue.put(written)
        written.wait(timeout_s)

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _write(self) -> None:
        while (item := self._queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
                continue
            self._stream.write(item.decode())
            self._stream.flush()


_lines: AccessLines | None = None


def sync_access() -> None:
    """Every access line so far is on the stream (see ``AccessLines.sync``)."""
    if _lines is not None:
        _lines.sync()


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    EVENTS.log(level, name, extra={"fields": {"event": name, **fields}})


def access(fields: dict[str, Any]) -> None:
    if not ACCESS.isEnabledFor(logging.INFO):
        return
    if _lines is not None and not ACCESS.handlers and ACCESS.propagate:
        entry = {"ts": round(time.time(), 3), **_ACCESS_HEAD, **fields}
        _lines.add(orjson.dumps(entry, default=str, option=orjson.OPT_APPEND_NEWLINE))
        return
    # Built directly: Logger.info would walk the stack to find its caller.
    record = logging.LogRecord("spendgate.access", logging.INFO, "", 0, "request", None, None)
    record.fields = fields
    ACCESS.handle(record)


_ACCESS_HEAD = {"level": "info", "logger": "spendgate.access", "msg": "request"}
