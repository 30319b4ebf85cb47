from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sse import DONE_FRAME, Decoder, Event, EventTooLarge, frame

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


@given(st.lists(st.integers(min_value=0, max_value=2 * len(STREAM)), max_size=12))
def test_any_split_of_crlf_bytes_gives_the_same_events(cuts: list[int]) -> None:
    crlf = STREAM.replace(b"\n", b"\r\n")  # a cut may fall between CR and LF
    decoder = Decoder()
    events: list[Event] = []
    points = [0, *sorted(min(c, len(crlf)) for c in cuts), len(crlf)]
    for start, end in itertools.pairwise(points):
        events += decoder.feed(crlf[start:end])
    assert events == EVENTS and not decoder.pending


def test_cr_only_line_endings_and_a_cr_at_the_end_of_a_read() -> None:
    decoder = Decoder()
    assert decoder.feed(b"data: a\r\r") == [Event(None, b"a")]  # no wait for the next read
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [Event(None, b"b")]  # that LF paired the CR


def test_an_event_split_across_many_reads() -> None:
    event = b'event: message_delta\ndata: {"text": "' + b"x" * 5000 + b'"}\n\n'
    decoder = Decoder()
    events: list[Event] = []
    for i in range(0, len(event), 7):
        events += decoder.feed(event[i : i + 7])
    assert events == [Event("message_delta", event[27:-2])]
    assert decoder.buffered == 0 and not decoder.pending


def test_a_10_mb_event_in_64_kb_pieces_is_decoded_with_a_bounded_buffer() -> None:
    payload = b"y" * (10 * 1024 * 1024)
    stream = b"data: " + payload + b"\n\ndata: [DONE]\n\n"
    decoder = Decoder(max_event_bytes=16 * 1024 * 1024)
    events: list[Event] = []
    piece = 64 * 1024
    for i in range(0, len(stream), piece):
        events += decoder.feed(stream[i : i + piece])
        assert decoder.buffered <= min(i + piece, len(payload) + 6)  # only the open event
    assert [len(e.data) for e in events] == [len(payload), 6]
    assert decoder.buffered == 0


def test_an_event_over_the_limit_raises_and_frees_its_buffer() -> None:
    decoder = Decoder(max_event_bytes=100_000)
    assert decoder.feed(b"data: ok\n\n") == [Event(None, b"ok")]
    piece = b"z" * 30_000
    with pytest.raises(EventTooLarge):
        for _ in range(10):
            decoder.feed(piece)
            assert decoder.buffered <= 100_000
    assert decoder.buffered == 0


def test_an_event_over_the_limit_inside_one_read_raises() -> None:
    decoder = Decoder(max_event_bytes=1000)
    with pytest.raises(EventTooLarge):
        decoder.feed(b"data: small\n\ndata: " + b"w" * 2000 + b"\n\ndata: after\n\n")


def test_events_at_the_limit_pass() -> None:
    block = b"data: " + b"v" * 994  # exactly 1000 bytes
    decoder = Decoder(max_event_bytes=1000)
    assert decoder.feed(block[:500]) == []
    assert decoder.feed(block[500:] + b"\n\n") == [Event(None, b"v" * 994)]
