"""No secret ever echoed: what an upstream sends back is cleaned before anyone sees it.

Debug proxies and some self-hosted servers answer errors with the request's headers
in the body, ``Authorization: Bearer <provider key>`` included; in-stream error
payloads can carry them too. ``Scrubber`` removes every configured secret (provider,
gateway, admin and metrics keys) and any ``Authorization`` / ``x-api-key`` value from
such text before it reaches the client, the idempotency store, the logs or the traces.
It runs on error paths only: the happy path never pays for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

REDACTED = "[redacted]"
MIN_SECRET = 6  # shorter "secrets" would redact ordinary words
# A header echoed as text or JSON: name, separator, then the value (a Bearer token or
# a bare key) up to a quote, a comma, whitespace or a closing bracket.
_ECHO = re.compile(
    r"(?i)(authorization|x-api-key|api-key|proxy-authorization)(\"?\s*[:=]\s*\"?\s*)"
    r"((?:bearer|basic)\s+)?[^\s\"',}\]]+"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")


class Scrubber:
    def __init__(self, secrets: Iterable[str]) -> None:
        found = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)
        self._exact = re.compile("|".join(re.escape(s) for s in found)) if found else None

    def text(self, text: str) -> str:
        if self._exact is not None:
            text = self._exact.sub(REDACTED, text)
        text = _ECHO.sub(lambda m: m.group(1) + m.group(2) + (m.group(3) or "") + REDACTED, text)
        return _BEARER.sub(lambda m: m.group(1) + REDACTED, text)

    def bytes(self, data: bytes) -> bytes:
        return self.text(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


NOTHING = Scrubber(())


def scrub_bytes(scrub: Callable[[str], str], data: bytes) -> bytes:
    if not data:
        return data
    return scrub(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
