"""What every translator shares: the JSON alias, the refusal, and small readers (pure)."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.providers.anthropic_translate import TranslationError

__all__ = ["JSON", "TranslationError", "event_frame", "obj", "text_of", "usage_numbers"]

JSON = dict[str, Any]


def text_of(content: object) -> str:
    """The text of a content value: a string, or the ``text`` of a list of parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return "" if content is None else str(content)
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append(part["text"])
    return "".join(parts)


def obj(value: object) -> JSON:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_numbers(usage: object) -> tuple[int, int, int]:
    """(prompt, completion, cached prompt) tokens of a chat ``usage`` block (0 if unknown)."""
    if not isinstance(usage, dict):
        return 0, 0, 0
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return (
        _count(usage.get("prompt_tokens")),
        _count(usage.get("completion_tokens")),
        _count(cached),
    )


def event_frame(event: str, data: JSON) -> bytes:
    """One named SSE event (the Responses and Messages APIs name every event)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
