"""Idempotency-Key: validation, fingerprint, scope and the stored answer's format.

Semantics (after Stripe and the IETF draft "The Idempotency-Key HTTP Header Field"):
the key is scoped to the caller's gateway key and the endpoint; the fingerprint is a
hash of the canonical request body; the same key with another body is a conflict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

MAX_KEY_LENGTH = 255


class InvalidKey(ValueError):
    pass


def parse_key(value: str) -> str:
    """The key of an ``Idempotency-Key`` header: a bare token or an RFC 8941 string
    (``"abc"``), which are the same key. At most 255 printable ASCII characters."""
    key = value.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = _unquote(key[1:-1])
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters")
    if any(not (0x20 <= ord(ch) <= 0x7E) for ch in key):
        raise InvalidKey("Idempotency-Key must be printable ASCII")
    return key


def _unquote(inner: str) -> str:
    out: list[str] = []
    chars = iter(inner)
    for ch in chars:
        if ch == "\\":
            escaped = next(chars, "")
            if escaped not in ('"', "\\"):
                raise InvalidKey('Idempotency-Key: only \\" and \\\\ may be escaped')
            out.append(escaped)
        elif ch == '"':
            raise InvalidKey("Idempotency-Key: an unescaped quote inside a quoted key")
        else:
            out.append(ch)
    return "".join(out)


def derived_key(workflow_id: str, step: str) -> str:
    """A key from a workflow and a step. The workflow id's length is part of it, so no
    two (workflow, step) pairs share a key: (``proj:alpha``, ``deploy``) and (``proj``,
    ``alpha:deploy``) differ."""
    return f"workflow-step:{len(workflow_id)}:{workflow_id}:{step}"


def fingerprint(body: Mapping[str, Any]) -> str:
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def scope(key_name: str, endpoint: str, key: str) -> str:
    """Where the record lives: one tenant can never reach another's answer."""
    digest = hashlib.sha256(f"{key_name}\x00{endpoint}\x00{key}".encode()).hexdigest()
    return f"{key_name}:{endpoint}:{digest}"


@dataclass
class Record:
    """A stored answer: status, the headers that matter, and the body or SSE frames."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    frames: list[bytes] = field(default_factory=list)
    stream: bool = False

    def size(self) -> int:
        return len(self.body) + sum(len(f) for f in self.frames)

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "status": self.status,
                "headers": self.headers,
                "stream": self.stream,
                "body": self.body.decode("latin-1"),
                "frames": [f.decode("latin-1") for f in self.frames],
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Record:
        data = orjson.loads(raw)
        return cls(
            status=int(data["status"]),
            headers=dict(data["headers"]),
            body=data["body"].encode("latin-1"),
            frames=[f.encode("latin-1") for f in data["frames"]],
            stream=bool(data["stream"]),
        )
