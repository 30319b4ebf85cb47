"""The scrubber removes every configured secret and every echoed credential header."""

from __future__ import annotations

import json

from gateway.scrub import REDACTED, Scrubber

KEY = "sk-provider-SENTINEL-7f3a9c"


def test_configured_secrets_are_removed_wherever_they_are() -> None:
    scrub = Scrubber([KEY, "sg-gateway-key-123"])
    text = f"bad key {KEY} and again{KEY}, gateway sg-gateway-key-123"
    cleaned = scrub.text(text)
    assert KEY not in cleaned and "sg-gateway-key-123" not in cleaned
    assert cleaned.count(REDACTED) == 3


def test_echoed_credential_headers_are_removed_even_when_unknown() -> None:
    scrub = Scrubber([])
    body = json.dumps(
        {
            "error": "bad request",
            "request_headers": {
                "Authorization": "Bearer sk-someone-elses-key-0000",
                "x-api-key": "sk-ant-abcdef123456",
                "content-type": "application/json",
            },
        }
    )
    cleaned = scrub.text(body)
    assert "sk-someone-elses-key-0000" not in cleaned and "sk-ant-abcdef123456" not in cleaned
    assert json.loads(cleaned)["request_headers"]["content-type"] == "application/json"
    raw = "GET / HTTP/1.1\r\nauthorization: Bearer abcdefgh12345678\r\nX-Api-Key: zzzzzz999\r\n"
    cleaned = scrub.text(raw)
    assert "abcdefgh12345678" not in cleaned and "zzzzzz999" not in cleaned


def test_bytes_round_trip_and_ordinary_text_is_left_alone() -> None:
    scrub = Scrubber([KEY, "abc"])  # too short to be treated as a secret
    assert scrub.bytes(f"x {KEY} \xff".encode("latin-1")) == f"x {REDACTED} \xff".encode(
        "latin-1"
    ).replace(b"\xff", b"\xff")
    assert scrub.text("the model is overloaded, abc") == "the model is overloaded, abc"
