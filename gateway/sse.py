"""Pure server-sent-events decoding and framing: bytes in, events out, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

DONE = b"[DONE]"
MAX_EVENT_BYTES = 4 * 1024 * 1024


class EventTooLarge(ValueError):
    """One event grew past the decoder's limit (the stream cannot go on)."""


@dataclass(frozen=True, slots=True)
class Event:
    event: str | None
    data: bytes


class Decoder:
    """Incremental SSE decoder; tolerant of CRLF and of events split across reads.

    Linear time: each read is scanned once for event boundaries (CR and CRLF become
    LF as they arrive; a CRLF split across two reads is joined), and the bytes of an
    unfinished event are kept apart, never re-split. One event larger than
    ``max_event_bytes`` raises EventTooLarge (the buffer never holds much more).
    """

    __slots__ = ("_buffer", "_cr", "_max")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buffer = bytearray()  # the unfinished event, LF line ends only
        self._cr = False  # the last read ended with CR: a leading LF is its pair
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[Event]:
        if not chunk:
            return []
        if self._cr:
            self._cr = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer
        if buffer:
            if b"\n\n" not in chunk and not (chunk[:1] == b"\n" and buffer[-1:] == b"\n"):
                buffer += chunk
                if len(buffer) > self._max:
                    self._too_large(len(buffer))
                return []
            buffer += chunk
            chunk = bytes(buffer)
            buffer.clear()
        blocks = chunk.split(b"\n\n")
        rest = blocks.pop()
        if rest:
            if len(rest) > self._max:
                self._too_large(len(rest))
            buffer += rest
        if len(chunk) > self._max:
            for block in blocks:
                if len(block) > self._max:
                    self._too_large(len(block))
        return [event for block in blocks if (event := _parse(block)) is not None]

    def _too_large(self, size: int) -> None:
        self._buffer = bytearray()
        raise EventTooLarge(f"an event of more than {self._max} bytes ({size} so far)")

    def flush(self) -> list[Event]:
        """Whatever complete-looking event is left when the stream ends."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        event = _parse(rest.strip(b"\n"))
        return [event] if event is not None else []

    @property
    def pending(self) -> bool:
        return bool(self._buffer.strip())

    @property
    def buffered(self) -> int:
        """Bytes held for the unfinished event."""
        return len(self._buffer)


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
