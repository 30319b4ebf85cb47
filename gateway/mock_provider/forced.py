"""A forced tool (``tool_choice: {"type": "tool", "name": ...}``): the mock calls it,
with an input that follows the tool's JSON schema (the first enum value, ``"word"``
for strings, 1 for numbers, true, one item per array, every property of an object),
as a model made to call a tool does."""

from __future__ import annotations

import json
from typing import Any

from gateway.mock_provider.script import ToolCall

MAX_DEPTH = 8


def forced_tool_call(body: dict[str, Any]) -> ToolCall | None:
    choice = body.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") != "tool":
        return None
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and tool.get("name") == choice.get("name"):
            value = instance(tool.get("input_schema") or {}, 0)
            return ToolCall(str(tool["name"]), json.dumps(value), value)
    return None


def instance(schema: Any, depth: int) -> Any:
    """A value that follows ``schema`` (the parts of JSON schema the mock knows)."""
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        return {name: instance(sub, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        return [instance(schema.get("items") or {}, depth + 1)]
    return {"string": "word", "number": 1, "integer": 1, "boolean": True}.get(str(kind))
