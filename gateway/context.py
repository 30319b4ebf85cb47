"""One request as it moves down the path, and the answers the path can give."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from accounting.budgets import Hold, Scope
from accounting.pricing import micros_to_usd
from accounting.store.base import WorkflowState
from accounting.tokens import (
    estimate_chat_prompt,
    estimate_embedding_input,
    prompt_upper_bound,
    upper_bound_of_count,
)
from accounting.usage import Usage
from gateway.auth import Principal
from gateway.provider_gate import NO_SLOT, Slot
from gateway.providers.base import Endpoint, UpstreamStream
from gateway.runtime import ModelRuntime
from gateway.translate.views import chat_view
from policies.deadline import Deadline

OUTPUT_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


@dataclass
class Ctx:
    """One request as it moves down the path."""

    request_id: str
    principal: Principal
    endpoint: Endpoint
    body: dict[str, Any]
    model: str
    stream: bool
    deadline: Deadline
    scope: Scope
    sdk_retrying: bool = False
    upstream_headers: dict[str, str] = field(default_factory=dict)
    start: float = field(default_factory=time.perf_counter)
    served: str | None = None
    attempts: int = 0
    retries: int = 0
    cost_micros: int = 0
    usage: Usage = field(default_factory=Usage)
    partial: bool = False
    workflow: WorkflowState | None = None
    upstream_s: float = 0.0
    ttft_s: float | None = None
    span: Any = None  # the request's server span, when tracing is on
    retry_reason: str | None = None
    body_bytes: int = 0
    caching: bool = False  # the body marks something for the cache (it may write one)
    timer: asyncio.Timeout | None = None  # the pipeline's deadline, to reschedule
    attempts_open: list[Attempt] = field(default_factory=list)  # reserved, not settled
    rules: list[str] = field(default_factory=list)  # the charging rule of each attempt
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (fallback, why not)
    sent_limit: int | None = None  # an output limit the gateway lowered or set (per choice)
    rate_tokens: int | None = None  # taken from the key's tpm (``key_limits``)
    _prompt: dict[str, int] = field(default_factory=dict)

    def clamp_deadline(self, seconds_left: float) -> None:
        """The request may take no longer than ``seconds_left`` (its workflow's)."""
        if seconds_left >= self.deadline.remaining():
            return
        self.deadline = Deadline(
            self.deadline.clock() + max(seconds_left, 0.0), self.deadline.clock
        )
        if self.timer is not None:
            self.timer.reschedule(asyncio.get_running_loop().time() + max(seconds_left, 0.0))

    def prompt_bound(self) -> int:
        """Tokens the prompt cannot exceed, without tokenizing (see prompt_upper_bound)."""
        return prompt_upper_bound(self.body, self.body_bytes)

    def prompt_tokens(self, m: ModelRuntime) -> int:
        cached = self._prompt.get(m.upstream_model)
        if cached is None:
            if self.endpoint == "embeddings":
                cached = estimate_embedding_input(self.body, m.upstream_model)
            else:
                cached = estimate_chat_prompt(chat_view(self.endpoint, self.body), m.upstream_model)
            self._prompt[m.upstream_model] = cached
        return cached

    def prompt_upper(self, m: ModelRuntime) -> int:
        """Prompt tokens the model's own tokenizer cannot exceed: the tokenizer's count
        (scaled for models tiktoken does not know), never above the byte bound."""
        return min(
            upper_bound_of_count(self.prompt_tokens(m), m.upstream_model), self.prompt_bound()
        )

    def output_limit(self, m: ModelRuntime) -> tuple[int, int]:
        """(output limit per choice, choices): the caller's limit (never above the
        model's maximum: a larger one is lowered to it), else the model's maximum."""
        limit = m.max_output_tokens
        for name in OUTPUT_FIELDS:
            value = self.body.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                limit = min(value, m.max_output_tokens)
                break
        choices = self.body.get("n", 1)
        if isinstance(choices, int) and not isinstance(choices, bool) and choices > 1:
            return limit, choices
        return limit, 1

    def max_output(self, m: ModelRuntime) -> int:
        """The most completion tokens this request can be billed: its limit for each of
        its ``n`` choices (see ``output_limit``)."""
        if self.endpoint == "embeddings":
            return 0
        limit, choices = self.output_limit(m)
        return limit * choices

    def caller_limit(self) -> tuple[str | None, int | None]:
        """The output-limit field the caller set, and its value (None, None if none)."""
        for name in OUTPUT_FIELDS:
            value = self.body.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                return name, value
        return None, None


@dataclass(slots=True)
class Attempt:
    """One upstream attempt from its reservation to its settlement."""

    model: ModelRuntime
    hold: Hold
    reason: str  # primary | fallback | context_window
    is_retry: bool
    prompt_tokens: int  # the prompt part of the hold (an upper bound); -1: none held
    output_tokens: int  # the output part of the hold
    sent_limit: int | None = None  # the output limit per choice sent, when not the caller's
    stream: UpstreamStream | None = None  # once the upstream accepted a stream
    draining: bool = False  # abandoned at the deadline, read on in the background
    slot: Slot = NO_SLOT  # its place in the provider's concurrency, given back at settle

    @property
    def settled(self) -> bool:
        return self.hold.settled


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class StreamAnswer:
    stream: UpstreamStream
    chunks: AsyncIterator[bytes]
    first: bytes
    attempt: Attempt


def response_headers(ctx: Ctx, *, with_cost: bool = True) -> dict[str, str]:
    headers = {
        "x-request-id": ctx.request_id,
        "x-spendgate-model": ctx.served or ctx.model,
        "x-spendgate-attempts": str(ctx.attempts),
    }
    if with_cost:
        headers["x-spendgate-cost-usd"] = micros_to_usd(ctx.cost_micros)
    if ctx.sent_limit is not None:
        headers["x-spendgate-max-tokens"] = str(ctx.sent_limit)
    wf = ctx.workflow
    if wf is not None:
        headers["x-workflow-spent-usd"] = micros_to_usd(wf.spent_micros)
        remaining = wf.remaining_micros
        if remaining is not None:
            headers["x-workflow-remaining-usd"] = micros_to_usd(remaining)
    return headers
