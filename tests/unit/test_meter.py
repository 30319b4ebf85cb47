"""What an attempt is charged when the provider's word is missing or only provisional."""

from __future__ import annotations

from accounting.meter import final_usage
from accounting.tokens import count_text, tokenizer_is_exact, upper_bound_of_count
from accounting.usage import Usage

TEXT = "the quick brown fox jumps over the lazy dog"


def test_final_usage_is_taken_as_it_is() -> None:
    usage = Usage(input_tokens=10, output_tokens=5)
    assert final_usage(usage, TEXT, "gpt-4o", lambda: 999) == (usage, False)


def test_missing_counts_are_estimated_from_prompt_and_text() -> None:
    usage, estimated = final_usage(Usage(), TEXT, "gpt-4o", lambda: 12)
    assert estimated
    assert usage.input_tokens == 12 and usage.output_tokens is None
    assert usage.partial_output_tokens == count_text(TEXT, "gpt-4o")


def test_a_provisional_output_count_is_only_a_floor() -> None:
    """Anthropic's message_start says output_tokens 1 whatever follows."""
    provisional = Usage(input_tokens=30, output_tokens=1)
    usage, estimated = final_usage(provisional, TEXT, "claude-sonnet-4-5", lambda: 0, final=False)
    assert estimated and usage.input_tokens == 30
    assert usage.output_tokens is None
    assert usage.partial_output_tokens == count_text(TEXT, "claude-sonnet-4-5") > 1


def test_a_provisional_count_above_the_text_is_kept() -> None:
    provisional = Usage(input_tokens=30, output_tokens=500)
    usage, _ = final_usage(provisional, "hi", "claude-sonnet-4-5", lambda: 0, final=False)
    assert usage.partial_output_tokens == 500


def test_upper_bounds_of_counts() -> None:
    assert tokenizer_is_exact("gpt-4o-2024-08-06") and tokenizer_is_exact("text-embedding-3-small")
    assert not tokenizer_is_exact("claude-sonnet-4-5")
    assert upper_bound_of_count(100, "gpt-4o") == 100
    assert upper_bound_of_count(100, "claude-sonnet-4-5") == 135
    assert upper_bound_of_count(1, "llama-3-70b") == 2  # rounded up, never down
