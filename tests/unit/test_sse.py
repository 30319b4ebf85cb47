from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from gateway.sse import DONE_FRAME, Decoder, Event, frame

STREAM = (
    b'data: {"a": 1}\n\n'
    b": a comment\n\n"
    b'event: message_start\ndata: {"b": 2}\n\n'
    b"data: line one\ndata: line two\n\n"
    b"data: [DONE]\n\n"
)
EVENTS = [
    Event(None, b'{"a": 1}'),
    Event("message_start", b'{"b": 2}'),
    Event(None, b"line one\nline two"),
    Event(None, b"[DONE]"),
]


def test_decodes_names_multiline_data_and_skips_comments() -> None:
    assert Decoder().feed(STREAM) == EVENTS


def test_crlf_line_endings() -> None:
    assert Decoder().feed(STREAM.replace(b"\n", b"\r\n")) == EVENTS


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_of_the_bytes_gives_the_same_events(cuts: list[int]) -> None:
    decoder = Decoder()
    events: list[Event] = []
    points = [0, *sorted(cuts), len(STREAM)]
    for start, end in itertools.pairwise(points):
        events += decoder.feed(STREAM[start:end])
    assert events == EVENTS and not decoder.pending


def test_flush_returns_an_unterminated_last_event() -> None:
    decoder = Decoder()
    assert decoder.feed(b'data: {"x": 1}') == []
    assert decoder.pending
    assert decoder.flush() == [Event(None, b'{"x": 1}')]


def test_framing() -> None:
    assert frame(b"x") == b"data: x\n\n"
    assert frame(b"x", "error") == b"event: error\ndata: x\n\n"
    assert DONE_FRAME == b"data: [DONE]\n\n"
