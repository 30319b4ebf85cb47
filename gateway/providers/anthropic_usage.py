"""Anthropic's ``usage`` objects in the gateway's convention, and back in OpenAI's
(``anthropic_stream`` and the Messages API use both)."""

from __future__ import annotations

from typing import Any

from accounting.usage import MAX_REPORTED_TOKENS, Usage

JSON = dict[str, Any]


def usage_from_anthropic(block: object) -> Usage:
    """Usage from an Anthropic ``usage`` object, in the gateway's convention.

    Anthropic's ``input_tokens`` excludes cache reads and writes; ``Usage.input_tokens``
    is the whole prompt (fresh + ``cache_read_input_tokens`` + cache writes).
    ``cache_creation_input_tokens`` (or, without it, the sum of the ``cache_creation``
    breakdown) -> ``cache_write_tokens``; the breakdown's
    ``ephemeral_1h_input_tokens`` -> ``cache_write_1h_tokens`` (unknown without it:
    every write is then billed at the 5-minute rate).
    """
    if not isinstance(block, dict):
        return Usage()
    base = _count(block.get("input_tokens"))
    read = _count(block.get("cache_read_input_tokens"))
    written = _count(block.get("cache_creation_input_tokens"))
    breakdown = block.get("cache_creation")
    w1h = None
    if isinstance(breakdown, dict):
        w5m = _count(breakdown.get("ephemeral_5m_input_tokens"))
        w1h = _count(breakdown.get("ephemeral_1h_input_tokens"))
        if w5m is not None or w1h is not None:  # never below its own parts
            written = max(written or 0, (w5m or 0) + (w1h or 0))
    return Usage(
        input_tokens=None if base is None else base + (read or 0) + (written or 0),
        output_tokens=_count(block.get("output_tokens")),
        cached_input_tokens=read,
        cache_write_tokens=written,
        cache_write_1h_tokens=w1h,
    )


def usage_to_openai(usage: Usage) -> JSON:
    """OpenAI ``usage`` object; unknown counts are reported as 0. Cache reads are
    ``cached_tokens``; cache writes have no OpenAI field (they are in ``prompt_tokens``)."""
    prompt = usage.input_tokens or 0
    completion = usage.output_tokens or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens or 0},
    }


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value if value <= MAX_REPORTED_TOKENS else None  # beyond it: not believed
