"""What an attempt really consumed, even when it was cut off half-way.

The provider's final counts win. What it never finally reported is estimated with the
tokenizer: the prompt from the request (unless the provider already reported it), the
completion from the text and tool-call arguments that actually arrived. A provisional
count (Anthropic's ``message_start`` says ``output_tokens: 1``) is a floor, never the
answer. An estimated completion is recorded as ``partial_output`` so the ledger shows
which part is an estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from accounting.tokens import count_completion_text
from accounting.usage import Usage


def final_usage(
    usage: Usage,
    received_text: str,
    model: str,
    prompt_estimate: Callable[[], int],
    *,
    final: bool = True,
    extra_tokens: int = 0,
) -> tuple[Usage, bool]:
    """(usage to charge, whether any of it is an estimate).

    With ``final`` False the provider's output count is provisional: the completion
    is counted from ``received_text`` and the larger of the two is charged.
    ``extra_tokens`` is added to a counted completion (a bound for text not kept).
    """
    estimated = False
    if usage.input_tokens is None:
        usage = replace(usage, input_tokens=prompt_estimate())
        estimated = True
    if not final and usage.output_tokens is not None:
        floor = usage.output_tokens
        produced = _counted(received_text, model) + extra_tokens
        return replace(usage, output_tokens=None, partial_output_tokens=max(floor, produced)), True
    if usage.output_tokens is None:
        produced = _counted(received_text, model) + extra_tokens
        usage = replace(usage, partial_output_tokens=produced)
        estimated = True
    return usage, estimated


def _counted(text: str, model: str) -> int:
    return count_completion_text(text, model) if text else 0


def bounded_usage(
    usage: Usage, received_bytes: int, prompt_bound: int, *, final: bool = True
) -> Usage:
    """Like ``final_usage`` without a tokenizer: byte bounds instead of counts (a
    byte-level BPE token is at least one byte), for when counting is not affordable."""
    if usage.input_tokens is None:
        usage = replace(usage, input_tokens=prompt_bound)
    if final and usage.output_tokens is not None:
        return usage
    floor = usage.output_tokens or 0
    return replace(usage, output_tokens=None, partial_output_tokens=max(floor, received_bytes))
