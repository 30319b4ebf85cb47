"""Usage counts: cache reads and writes are parts of input (``accounting.usage``), and
how each provider's usage block maps onto them."""

from __future__ import annotations

from accounting.store.common import counted_tokens
from accounting.usage import Usage, from_openai
from gateway.providers.anthropic_stream import usage_from_anthropic, usage_to_openai


def test_anthropic_cache_writes_are_part_of_input() -> None:
    block = {
        "input_tokens": 10,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 30,
        "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 10},
        "output_tokens": 7,
    }
    assert usage_from_anthropic(block) == Usage(
        input_tokens=140,
        output_tokens=7,
        cached_input_tokens=100,
        cache_write_tokens=30,
        cache_write_1h_tokens=10,
    )


def test_anthropic_breakdown_alone_or_larger_than_its_total() -> None:
    only = {"input_tokens": 1, "cache_creation": {"ephemeral_1h_input_tokens": 4}}
    assert usage_from_anthropic(only) == Usage(
        input_tokens=5, cache_write_tokens=4, cache_write_1h_tokens=4
    )
    larger = {
        "input_tokens": 1,
        "cache_creation_input_tokens": 2,
        "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 4},
    }
    assert usage_from_anthropic(larger).cache_write_tokens == 7  # never below its parts
    garbage = {"input_tokens": 1, "cache_creation": {"ephemeral_1h_input_tokens": "4"}}
    assert usage_from_anthropic(garbage) == Usage(input_tokens=1)


def test_usage_to_openai_reports_cache_reads() -> None:
    usage = Usage(140, 7, 100, cache_write_tokens=30)
    assert usage_to_openai(usage) == {
        "prompt_tokens": 140,
        "completion_tokens": 7,
        "total_tokens": 147,
        "prompt_tokens_details": {"cached_tokens": 100},
    }


def test_openai_cached_tokens_and_reasoning() -> None:
    block = {
        "prompt_tokens": 50,
        "completion_tokens": 30,
        "total_tokens": 80,
        "prompt_tokens_details": {"cached_tokens": 20},
        "completion_tokens_details": {"reasoning_tokens": 25},  # inside completion_tokens
    }
    assert from_openai(block) == Usage(input_tokens=50, output_tokens=30, cached_input_tokens=20)


def test_add_merge_and_kinds() -> None:
    a = Usage(100, 5, 10, cache_write_tokens=20, cache_write_1h_tokens=5)
    b = Usage(50, None, None, 3, cache_write_tokens=1)
    assert a.add(b) == Usage(150, 5, 10, 3, cache_write_tokens=21, cache_write_1h_tokens=5)
    assert a.merge(Usage(cache_write_tokens=7)) == Usage(
        100, 5, 10, cache_write_tokens=7, cache_write_1h_tokens=5
    )
    kinds = a.add(b).by_kind()
    assert kinds == {
        "input": 150,
        "output": 5,
        "cached_input": 10,
        "cache_write": 21,
        "partial_output": 3,
    }
    assert counted_tokens(kinds) == 150 + 5 + 3 == a.add(b).total()  # writes not twice
    assert Usage().by_kind() == {}
