"""Scripts: per-model queues of steps telling the mock provider how to answer.

A step is a JSON object; every key is optional and ``{}`` is a normal success. See the
package docstring for the meaning of each key.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

WILDCARD = "*"


class ScriptError(ValueError):
    """A script or step that does not have the documented shape."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str  # the JSON string sent to the client
    input: Any  # the parsed arguments (Anthropic ``input``); {} if not valid JSON


@dataclass(frozen=True, slots=True)
class Step:
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: Any = None
    context_window: bool = False
    content_policy: bool = False
    include_usage_on_error: bool = False
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    hang: bool = False
    hang_after_chunks: int | None = None
    reset_after_chunks: int | None = None
    close_after_chunks: int | None = None
    no_done: bool = False
    malformed_at_chunk: int | None = None
    error_after_chunks: int | None = None
    echo_headers: bool = False
    reject_prefill: bool = False
    tool_call: ToolCall | None = None
    usage: bool = True
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    completion_tokens: int | None = None

    @property
    def is_custom(self) -> bool:
        """True when the step answers with its own status/body instead of generating."""
        return self.body is not None or (self.status is not None and self.status >= 400)


OK_STEP = Step()

_BOOL_KEYS = (
    "context_window",
    "content_policy",
    "include_usage_on_error",
    "hang",
    "no_done",
    "usage",
    "echo_headers",
    "reject_prefill",
)
_COUNT_KEYS = (
    "hang_after_chunks",
    "reset_after_chunks",
    "close_after_chunks",
    "malformed_at_chunk",
    "error_after_chunks",
    "completion_tokens",
)
_DELAY_KEYS = ("delay_s", "chunk_delay_s")
_OTHER_KEYS = ("status", "headers", "body", "tool_call", "cached_tokens", "cache_write_tokens")
STEP_KEYS = frozenset(_BOOL_KEYS + _COUNT_KEYS + _DELAY_KEYS + _OTHER_KEYS)


def _count(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ScriptError(f"step key {key!r} must be a non-negative integer")
    return value


def _delay(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ScriptError(f"step key {key!r} must be a non-negative number of seconds")
    return float(value)


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise ScriptError("step key 'headers' must be an object")
    return tuple((str(name).lower(), str(item)) for name, item in value.items())


def _status(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 200 <= value <= 599:
        raise ScriptError("step key 'status' must be an HTTP status between 200 and 599")
    return value


def _tool_call(value: Any) -> ToolCall:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ScriptError("step key 'tool_call' must be an object with a string 'name'")
    arguments = value.get("arguments", {})
    if not isinstance(arguments, str):
        return ToolCall(value["name"], json.dumps(arguments), arguments)
    try:
        parsed: Any = json.loads(arguments)
    except ValueError:
        parsed = {}  # deliberately malformed arguments: Anthropic gets an empty input
    return ToolCall(value["name"], arguments, parsed)


def parse_step(raw: Any) -> Step:
    """Validate one step object; unknown keys are rejected to catch typos."""
    if raw is None:
        return OK_STEP
    if not isinstance(raw, dict):
        raise ScriptError("a step must be a JSON object")
    unknown = sorted(set(raw) - STEP_KEYS)
    if unknown:
        raise ScriptError(f"unknown step keys: {unknown}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _BOOL_KEYS:
            values[key] = bool(value)
        elif key in _COUNT_KEYS:
            values[key] = None if value is None else _count(key, value)
        elif key in ("cached_tokens", "cache_write_tokens"):
            values[key] = _count(key, value)
        elif key in _DELAY_KEYS:
            values[key] = _delay(key, value)
        elif key == "status":
            values[key] = _status(value)
        elif key == "headers":
            values[key] = _headers(value)
        elif key == "tool_call":
            values[key] = _tool_call(value)
        else:
            values[key] = value
    return Step(**values)


@dataclass(slots=True)
class Script:
    steps: deque[Step] = field(default_factory=deque)
    default: Step = OK_STEP

    def next_step(self) -> Step:
        return self.steps.popleft() if self.steps else self.default


def parse_script(raw: Any) -> Script:
    """A script: ``{"steps": [...], "default": step}``, or a bare list of steps."""
    if isinstance(raw, list):
        raw = {"steps": raw}
    if not isinstance(raw, dict):
        raise ScriptError("a script must be an object with 'steps' and optional 'default'")
    steps = raw.get("steps", [])
    if not isinstance(steps, list):
        raise ScriptError("'steps' must be a list of step objects")
    return Script(deque(parse_step(step) for step in steps), parse_step(raw.get("default")))


class ScriptBook:
    """Scripts by model name; ``"*"`` applies to models without their own script."""

    __slots__ = ("_scripts",)

    def __init__(self) -> None:
        self._scripts: dict[str, Script] = {}

    def register(self, model: str, script: Script) -> None:
        self._scripts[model] = script

    def load(self, mapping: Any) -> None:
        """Register every script of a ``{model: script}`` mapping."""
        if not isinstance(mapping, dict):
            raise ScriptError("a script file must map model names to scripts")
        for model, raw in mapping.items():
            self.register(str(model), parse_script(raw))

    def clear(self) -> None:
        self._scripts.clear()

    def models(self) -> list[str]:
        return [model for model in self._scripts if model != WILDCARD]

    def next_step(self, model: str | None) -> Step:
        if not self._scripts:
            return OK_STEP
        script = self._scripts.get(model or "") or self._scripts.get(WILDCARD)
        return script.next_step() if script is not None else OK_STEP
