"""Reasoning effort <-> Anthropic extended thinking: the one table the pairs share (pure).

OpenAI asks for reasoning by effort (Chat ``reasoning_effort``, Responses
``reasoning.effort``); Anthropic by a token budget (``thinking: {"type": "enabled",
"budget_tokens": N}``). Effort -> budget (chat -> anthropic, responses -> anthropic):

==============  ==============================
effort          ``thinking.budget_tokens``
==============  ==============================
none, minimal   no thinking
low             1024
medium          4096
high            16384
xhigh           32768
==============  ==============================

Any other effort cannot be translated (``TranslationError``). Where the budget does not
map, thinking is left out rather than the request refused:

* the budget is clamped below ``max_tokens`` (Anthropic counts thinking inside the
  output limit and requires ``budget_tokens < max_tokens``) and never under 1024,
  Anthropic's minimum: with ``max_tokens`` <= 1024 there is no room, so no thinking;
* a forced tool (``tool_choice`` any/tool, and so a JSON output format, which is served
  as a forced tool): Anthropic refuses forced tool use with thinking;
* a final assistant turn (a prefill) or one whose tool calls are being answered, when
  it does not start with a thinking block: with thinking on, Anthropic requires that
  turn's thinking to be sent back, and a chat or Responses history cannot carry it.

With thinking on, ``temperature``, ``top_p`` and ``top_k`` are dropped: Anthropic allows
none of them to be changed then (it samples thinking at its own settings).

Budget -> effort (messages -> openai): under 1024 (invalid), ``disabled`` or a type
without a budget map to nothing; below 4096 ``low``, below 16384 ``medium``, else
``high`` (never ``xhigh``, which few OpenAI models take).
"""

from __future__ import annotations

from typing import Any

from gateway.providers.anthropic_blocks import TranslationError

JSON = dict[str, Any]

EFFORT_BUDGETS: dict[str, int | None] = {
    "none": None,
    "minimal": None,
    "low": 1024,
    "medium": 4096,
    "high": 16384,
    "xhigh": 32768,
}
MIN_BUDGET = 1024
_EFFORTS_BY_BUDGET = ((16384, "high"), (4096, "medium"), (MIN_BUDGET, "low"))
_SAMPLING = ("temperature", "top_p", "top_k")
_THINKING_BLOCKS = ("thinking", "redacted_thinking")


def thinking_budget(effort: object, max_tokens: int, param: str) -> int | None:
    """The thinking budget ``effort`` asks for within ``max_tokens`` (None: no thinking)."""
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in EFFORT_BUDGETS:
        raise TranslationError(
            f"reasoning effort {effort!r} cannot be translated (one of "
            f"{', '.join(EFFORT_BUDGETS)})",
            param,
        )
    wanted = EFFORT_BUDGETS[effort]
    if wanted is None:
        return None
    budget = min(wanted, max_tokens - 1)
    return budget if budget >= MIN_BUDGET else None


def with_thinking(request: JSON, effort: object, param: str) -> JSON:
    """An Anthropic request body with the thinking ``effort`` asks for, where it maps."""
    budget = thinking_budget(effort, request["max_tokens"], param)
    if budget is None or _forces_tool(request) or _needs_replay(request["messages"]):
        return request
    out = {k: v for k, v in request.items() if k not in _SAMPLING}
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    return out


def _forces_tool(request: JSON) -> bool:
    choice = request.get("tool_choice")
    return isinstance(choice, dict) and choice.get("type") in ("any", "tool")


def _needs_replay(messages: list[JSON]) -> bool:
    """The last assistant turn is one whose thinking Anthropic wants back: a prefill, or
    a turn whose tool calls the request answers; and it has none."""
    for position in range(len(messages) - 1, -1, -1):
        turn = messages[position]
        if turn.get("role") != "assistant":
            continue
        blocks = turn.get("content")
        blocks = blocks if isinstance(blocks, list) else [{"type": "text"}]
        final = position == len(messages) - 1
        calls = any(isinstance(b, dict) and b.get("type") == "tool_use" for b in blocks)
        first = blocks[0].get("type") if blocks and isinstance(blocks[0], dict) else None
        return (final or calls) and first not in _THINKING_BLOCKS
    return False


def effort_for(thinking: object) -> str | None:
    """The reasoning effort an Anthropic ``thinking`` setting means (None: none maps)."""
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if isinstance(budget, bool) or not isinstance(budget, int):
        return None
    for floor, effort in _EFFORTS_BY_BUDGET:
        if budget >= floor:
            return effort
    return None


OPENAI_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def openai_reasons(upstream_model: str) -> bool:
    """Whether an OpenAI model is a reasoning model (takes ``reasoning_effort`` and
    ``max_completion_tokens`` only); other chat models refuse both."""
    return upstream_model.startswith(OPENAI_REASONING_PREFIXES)
