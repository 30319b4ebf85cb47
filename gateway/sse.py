"""Pure server-sent-events decoding and framing: bytes in, events out, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

DONE = b"[DONE]"


@dataclass(frozen=True, slots=True)
class Event:
    event: str | None
    data: bytes


class Decoder:
    """Incremental SSE decoder; tolerant of CRLF and of events split across reads."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[Event]:
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        blocks = buffer.split(b"\n\n")
        self._buffer = blocks.pop()
        return [event for block in blocks if (event := _parse(block)) is not None]

    def flush(self) -> list[Event]:
        """Whatever complete-looking event is left when the stream ends."""
        rest, self._buffer = self._buffer, b""
        event = _parse(rest.strip(b"\n"))
        return [event] if event is not None else []

    @property
    def pending(self) -> bool:
        return bool(self._buffer.strip())


def _parse(block: bytes) -> Event | None:
    if block.startswith(b"data: ") and b"\n" not in block:
        return Event(None, block[6:])  # the common case: one data line, no name
    name: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    if not data and name is None:
        return None
    return Event(name, b"\n".join(data))


def frame(data: bytes, event: str | None = None) -> bytes:
    """One SSE event, ready to write."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


DONE_FRAME = frame(DONE)
