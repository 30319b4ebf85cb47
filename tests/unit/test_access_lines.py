"""The access log's fast path (``gateway.telemetry.logging.AccessLines``): the lines of
one window reach the stream in one write, in order, each the JSON line
``JsonFormatter`` writes for the same record."""

from __future__ import annotations

import asyncio
import io
import logging

import orjson

from gateway.telemetry import logging as log


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def test_one_write_per_window_in_order() -> None:
    stream = CountingStream()
    lines = log.AccessLines(stream, delay_s=0)  # a window of one loop iteration
    for i in range(50):
        lines.add(orjson.dumps({"n": i}, option=orjson.OPT_APPEND_NEWLINE))
    await asyncio.sleep(0)  # the window ends: its lines go to the writer at once
    lines.add(b'{"n":50}\n')
    await asyncio.sleep(0)
    lines.close()
    written = [orjson.loads(line)["n"] for line in stream.getvalue().splitlines()]
    assert written == list(range(51)) and stream.writes == 2


async def test_a_window_holds_its_lines_until_it_ends_or_fills() -> None:
    stream = CountingStream()
    lines = log.AccessLines(stream, delay_s=3600)
    lines.add(b'{"n":0}\n')
    await asyncio.sleep(0)
    assert lines._queue.empty()  # held: the window is still open
    for i in range(1, log.AccessLines.MAX_LINES):
        lines.add(b'{"n":%d}\n' % i)
    assert not lines._queue.empty()  # full: handed over at once
    lines.add(b'{"n":-1}\n')
    lines.close()  # the last window is written at exit
    written = [orjson.loads(line)["n"] for line in stream.getvalue().splitlines()]
    assert written == [*range(log.AccessLines.MAX_LINES), -1] and stream.writes == 2


def test_without_a_loop_a_line_is_written_at_once() -> None:
    stream = CountingStream()
    lines = log.AccessLines(stream)
    lines.add(b'{"n":1}\n')
    lines.close()
    assert stream.getvalue() == '{"n":1}\n'


def test_a_fast_line_has_the_formatters_fields(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    stream = CountingStream()
    lines = log.AccessLines(stream)
    monkeypatch.setattr(log, "_lines", lines)
    level = log.ACCESS.level
    log.ACCESS.setLevel(logging.INFO)
    try:
        log.access({"request_id": "r1", "status": 200})
    finally:
        log.ACCESS.setLevel(level)
    lines.close()
    fast = orjson.loads(stream.getvalue())
    record = logging.LogRecord("spendgate.access", logging.INFO, "", 0, "request", None, None)
    record.fields = {"request_id": "r1", "status": 200}
    slow = orjson.loads(log.JsonFormatter().format(record))
    assert fast.keys() == slow.keys()
    assert {k: v for k, v in fast.items() if k != "ts"} == {
        k: v for k, v in slow.items() if k != "ts"
    }


async def test_sync_writes_the_open_window_before_it_ends() -> None:
    stream = CountingStream()
    lines = log.AccessLines(stream, delay_s=3600)
    lines.add(b'{"n":1}\n')
    lines.sync()  # at shutdown: nothing waits for the window's timer
    assert stream.getvalue() == '{"n":1}\n'
    lines.close()
