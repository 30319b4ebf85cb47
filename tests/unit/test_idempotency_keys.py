from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.idempotency import (
    InvalidKey,
    Record,
    fingerprint,
    parse_key,
    scope,
)


def test_bare_and_quoted_forms_are_the_same_key() -> None:
    assert parse_key("abc-123") == parse_key('"abc-123"') == "abc-123"
    assert parse_key(r'"a\"b\\c"') == 'a"b\\c'


@pytest.mark.parametrize(
    "bad", ["", "   ", "x" * 256, "caf\u00e9", "tab\there", '"a"b"', r'"a\x"', '""']
)
def test_invalid_keys_are_refused(bad: str) -> None:
    with pytest.raises(InvalidKey):
        parse_key(bad)


@given(
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=255
    ).filter(lambda k: '"' not in k)
)
def test_any_printable_key_up_to_255_is_accepted(key: str) -> None:
    assert parse_key(key) == key


def test_fingerprint_is_canonical() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_scope_separates_tenants_and_endpoints() -> None:
    assert scope("k1", "chat", "x") != scope("k2", "chat", "x")
    assert scope("k1", "chat", "x") != scope("k1", "embeddings", "x")


def test_record_round_trip_keeps_bytes() -> None:
    record = Record(
        200,
        {"content-type": "text/event-stream"},
        frames=[b'data: {"a": "\xc3\xa9"}\n\n', b"data: [DONE]\n\n"],
        stream=True,
    )
    assert Record.decode(record.encode()) == record
