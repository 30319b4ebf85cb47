"""Token usage with "unknown" kept distinct from zero.

A provider may or may not report a count; a stream cut off half-way never reports its
completion count. Each field is ``None`` when unknown and an ``int`` when known, so a
missing count can be estimated instead of silently billed as zero.

Input convention (OpenAI's, also genai-prices'): ``input_tokens`` is the WHOLE prompt::

    input_tokens = fresh input + cached_input_tokens (cache reads) + cache_write_tokens

``cache_write_tokens`` counts every prompt token written to the provider's prompt cache
(Anthropic ``cache_creation_input_tokens``), whatever its lifetime;
``cache_write_1h_tokens`` is the part of it written to the 1-hour cache (Anthropic's
``cache_creation.ephemeral_1h_input_tokens``; unknown means none: the 5-minute rate).
Cache reads and writes are sub-kinds of input: they are never added to a token total.
Output reasoning tokens are part of ``output_tokens`` (OpenAI counts them in
``completion_tokens``) and are billed at the output rate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    # Completion tokens that were generated but never reported by the provider
    # (a stream cut off before its usage block): estimated by the tokenizer.
    partial_output_tokens: int | None = None
    # Prompt tokens written to the prompt cache (part of input_tokens), and the part of
    # those written to the 1-hour cache (part of cache_write_tokens).
    cache_write_tokens: int | None = None
    cache_write_1h_tokens: int | None = None

    @property
    def complete(self) -> bool:
        """True when the provider reported both input and output counts."""
        return self.input_tokens is not None and self.output_tokens is not None

    def merge(self, newer: Usage) -> Usage:
        """Take every count ``newer`` knows; keep ours where it does not.

        Anthropic reports cumulative counts in several events: the latest value wins,
        counts are never summed.
        """
        return replace(
            self,
            input_tokens=_pick(newer.input_tokens, self.input_tokens),
            output_tokens=_pick(newer.output_tokens, self.output_tokens),
            cached_input_tokens=_pick(newer.cached_input_tokens, self.cached_input_tokens),
            partial_output_tokens=_pick(newer.partial_output_tokens, self.partial_output_tokens),
            cache_write_tokens=_pick(newer.cache_write_tokens, self.cache_write_tokens),
            cache_write_1h_tokens=_pick(newer.cache_write_1h_tokens, self.cache_write_1h_tokens),
        )

    def add(self, other: Usage) -> Usage:
        """Counts of two attempts summed (unknown stays unknown only if both are)."""
        return Usage(
            _plus(self.input_tokens, other.input_tokens),
            _plus(self.output_tokens, other.output_tokens),
            _plus(self.cached_input_tokens, other.cached_input_tokens),
            _plus(self.partial_output_tokens, other.partial_output_tokens),
            _plus(self.cache_write_tokens, other.cache_write_tokens),
            _plus(self.cache_write_1h_tokens, other.cache_write_1h_tokens),
        )

    def total(self) -> int:
        """All tokens known, unknown counted as 0 (only for token caps and display)."""
        return (
            (self.input_tokens or 0) + (self.output_tokens or 0) + (self.partial_output_tokens or 0)
        )

    def by_kind(self) -> dict[str, int]:
        """Known counts by the metric's ``kind`` label; unknown kinds are left out.

        ``cached_input`` and ``cache_write`` are parts of ``input``: only ``input``,
        ``output`` and ``partial_output`` add up to a total (``COUNTED_KINDS``).
        """
        kinds = {
            "input": self.input_tokens,
            "output": self.output_tokens,
            "cached_input": self.cached_input_tokens,
            "cache_write": self.cache_write_tokens,
            "partial_output": self.partial_output_tokens,
        }
        return {k: v for k, v in kinds.items() if v is not None}


def _plus(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


def _pick(newer: int | None, older: int | None) -> int | None:
    return newer if newer is not None else older


def from_openai(block: object) -> Usage:
    """Usage from an OpenAI ``usage`` object (chat or embeddings); tolerant of garbage.

    OpenAI reports cache reads (``prompt_tokens_details.cached_tokens``, part of
    ``prompt_tokens``) and no cache writes; reasoning tokens are inside
    ``completion_tokens``.
    """
    if not isinstance(block, dict):
        return Usage()
    details = block.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    output = block.get("completion_tokens")
    if output is None and "prompt_tokens" in block and "total_tokens" in block:
        output = 0  # embeddings: no completion at all, which is a known zero
    return Usage(
        input_tokens=_int_or_none(block.get("prompt_tokens")),
        output_tokens=_int_or_none(output),
        cached_input_tokens=_int_or_none(cached),
    )


# A count no real answer reaches: a provider reporting more is not believed (the count
# is unknown and is estimated instead), so a hostile upstream cannot overflow money.
MAX_REPORTED_TOKENS = 10**12


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value if value <= MAX_REPORTED_TOKENS else None
