"""What an answer really consumed, even when it was cut off half-way.

The provider's own counts win. What it never reported is estimated with the
tokenizer: the prompt from the request, the completion from the text and tool-call
arguments that were actually received. An estimated completion is recorded as
``partial_output`` so the ledger shows which part is an estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from accounting.tokens import count_completion_text
from accounting.usage import Usage


def final_usage(
    usage: Usage, received_text: str, model: str, prompt_estimate: Callable[[], int]
) -> tuple[Usage, bool]:
    """(usage to charge, whether any of it is an estimate)."""
    estimated = False
    if usage.input_tokens is None:
        usage = replace(usage, input_tokens=prompt_estimate())
        estimated = True
    if usage.output_tokens is None:
        produced = count_completion_text(received_text, model) if received_text else 0
        usage = replace(usage, partial_output_tokens=produced)
        estimated = True
    return usage, estimated
