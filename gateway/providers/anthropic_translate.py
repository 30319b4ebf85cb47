"""Pure translation between OpenAI Chat Completions and Anthropic's Messages API.

``to_anthropic_request`` builds the Anthropic body from a whitelist, so OpenAI-only
fields never reach Anthropic. Fields Anthropic cannot honour:

* ``n`` > 1, ``logprobs: true``, audio/file-id content parts, non-function tools and a
  ``response_format`` together with tools raise ``TranslationError`` (the gateway
  answers 400 with ``param`` set, or skips the model as a fallback).
* ``response_format`` ``json_schema`` (or ``json_object``) becomes a forced tool whose
  input schema is the requested schema (``structured_output``): the tool's input is
  the answer, given back as the message's content (``anthropic_stream``), so the
  client gets JSON in the schema's shape.
* ``reasoning_effort`` -> ``thinking`` with a token budget (the table and where it does
  not map: ``gateway.translate.reasoning``); with thinking on, ``temperature`` and
  ``top_p`` are dropped. Thinking blocks of the answer are not surfaced (chat has no
  field for them); their tokens are in Anthropic's ``output_tokens``, so billed.
* ``frequency_penalty``, ``presence_penalty``, ``logit_bias``, ``seed``, ``top_logprobs``,
  ``stream_options``, ``service_tier``, ``store``, ``metadata``, ``modalities``,
  ``prediction`` and unknown keys are dropped.
* ``temperature`` is clamped to Anthropic's 0..1 range; ``top_p`` outside 0..1 raises and
  ``top_p: 1`` (the default) is omitted.
* ``system``/``developer`` messages anywhere in the list are hoisted to ``system``.
* Assistant tool-call ``arguments`` that are not a JSON object (for example a call cut off
  by ``finish_reason: "length"`` and echoed back in the history) become ``{}``: OpenAI
  accepts such histories, so rejecting them would break agent loops.
* Empty text parts are dropped (Anthropic rejects empty text blocks); a message left
  without any block is dropped too.
* ``cache_control`` on content parts, tools and system parts is passed through.

The Anthropic -> OpenAI direction (responses, usage, errors, streams) lives in
``gateway.providers.anthropic_stream``; it is re-exported here with the request side.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from gateway.providers.anthropic_blocks import (
    TranslationError,
    assistant_blocks,
    content_blocks,
    tool_result_block,
)
from gateway.providers.anthropic_stream import (
    AnthropicStreamTranslator,
    error_to_openai,
    from_anthropic_response,
    is_content_policy_error,
    is_context_window_error,
    map_stop_reason,
    usage_from_anthropic,
    usage_to_openai,
)
from gateway.translate.reasoning import with_thinking

__all__ = ["AnthropicStreamTranslator", "TranslationError", "error_to_openai"]
__all__ += ["from_anthropic_response", "is_content_policy_error", "is_context_window_error"]
__all__ += ["map_stop_reason", "to_anthropic_request", "usage_from_anthropic", "usage_to_openai"]
__all__ += ["append_turn", "disable_parallel", "sampling", "structured_output", "system_value"]

JSON = dict[str, Any]

_EMPTY_SCHEMA: JSON = {"type": "object", "properties": {}}
TOOL_CHOICES: dict[str, JSON] = {"auto": {"type": "auto"}, "required": {"type": "any"}}
TOOL_CHOICES["none"] = {"type": "none"}


STRUCTURED_DESCRIPTION = (
    "Give your whole answer as this tool's input, which must follow its schema exactly."
)
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def structured_output(body: JSON) -> tuple[str, JSON] | None:
    """(forced tool name, input schema) for a JSON ``response_format``, else None."""
    fmt = body.get("response_format")
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_schema", "json_object"):
        raise TranslationError(
            "response_format must be text, json_object or json_schema", "response_format"
        )
    if body.get("tools"):
        raise TranslationError(
            "response_format together with tools cannot be translated for this model",
            "response_format",
        )
    if fmt["type"] == "json_object":
        return "json_response", {"type": "object"}
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise TranslationError(
            "response_format.json_schema.schema must be an object", "response_format"
        )
    name = spec.get("name") if isinstance(spec, dict) else None
    return (name if isinstance(name, str) and _TOOL_NAME.match(name) else "json_response"), schema


def to_anthropic_request(body: JSON, upstream_model: str, default_max_tokens: int) -> JSON:
    """OpenAI chat request body -> Anthropic Messages request body."""
    if not isinstance(body, dict):
        raise TranslationError("request body must be a JSON object")
    _reject_unsupported(body)
    system, messages = _translate_messages(body.get("messages"))
    out: JSON = {
        "model": upstream_model,
        "messages": messages,
        "max_tokens": _max_tokens(body, default_max_tokens),
    }
    if system is not None:
        out["system"] = system
    out.update(sampling(body))
    out.update(_tools(body))
    structured = structured_output(body)
    if structured is not None:
        name, schema = structured
        out["tools"] = [
            {"name": name, "description": STRUCTURED_DESCRIPTION, "input_schema": schema}
        ]
        out["tool_choice"] = {"type": "tool", "name": name}
    stream = body.get("stream")
    if stream is not None:
        if not isinstance(stream, bool):
            raise TranslationError("'stream' must be a boolean", "stream")
        out["stream"] = stream
    user = body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    return with_thinking(out, body.get("reasoning_effort"), "reasoning_effort")


def _reject_unsupported(body: JSON) -> None:
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise TranslationError("'n' must be a positive integer", "n")
    if n is not None and n > 1:
        raise TranslationError("n > 1 is not supported for this model", "n")
    if body.get("logprobs") is True:
        raise TranslationError("logprobs are not supported for this model", "logprobs")


def _translate_messages(raw: object) -> tuple[str | list[JSON] | None, list[JSON]]:
    if not isinstance(raw, list) or not raw:
        raise TranslationError("'messages' must be a non-empty array", "messages")
    system: list[JSON] = []
    turns: list[JSON] = []
    for i, msg in enumerate(raw):
        param = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise TranslationError("each message must be an object", param)
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_system_blocks(msg.get("content"), param))
            continue
        target, blocks = _message_blocks(role, msg, param)
        append_turn(turns, target, blocks)
    if not turns:
        raise TranslationError("no non-empty user or assistant message", "messages")
    return system_value(system), turns


def _message_blocks(role: object, msg: JSON, param: str) -> tuple[str, list[JSON]]:
    if role == "user":
        return "user", content_blocks(msg.get("content"), param)
    if role == "assistant":
        return "assistant", assistant_blocks(msg, param)
    if role == "tool":
        return "user", [tool_result_block(msg, param)]
    raise TranslationError(f"unsupported message role {role!r}", f"{param}.role")


def append_turn(turns: list[JSON], role: str, blocks: list[JSON]) -> None:
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": list(blocks)})


def _system_blocks(content: object, param: str) -> list[JSON]:
    blocks = content_blocks(content, param)
    if any(block["type"] != "text" for block in blocks):
        raise TranslationError("system messages may only contain text", f"{param}.content")
    return blocks


def system_value(blocks: list[JSON]) -> str | list[JSON] | None:
    if not blocks:
        return None
    if len(blocks) == 1 and set(blocks[0]) == {"type", "text"}:
        text: str = blocks[0]["text"]
        return text
    return blocks


def _max_tokens(body: JSON, default: int) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TranslationError(f"'{key}' must be a positive integer", key)
        return value
    return default


def sampling(body: JSON) -> JSON:
    out: JSON = {}
    temperature = _number(body, "temperature")
    if temperature is not None:
        out["temperature"] = min(max(temperature, 0), 1)
    top_p = _number(body, "top_p")
    if top_p is not None:
        if not 0 <= top_p <= 1:
            raise TranslationError("'top_p' must be between 0 and 1", "top_p")
        if top_p != 1:  # 1 is the default; newer models reject temperature with top_p
            out["top_p"] = top_p
    stop = _stop_sequences(body.get("stop"))
    if stop:
        out["stop_sequences"] = stop
    return out


def _number(body: JSON, key: str) -> float | int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise TranslationError(f"'{key}' must be a number", key)
    return value


def _stop_sequences(raw: object) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw] if raw else []
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        raise TranslationError("'stop' must be a string or an array of strings", "stop")
    return [s for s in raw if s]


def _tools(body: JSON) -> JSON:
    return tools_of(body, _tool_def, _tool_choice)


def tools_of(
    body: JSON,
    tool_def: Callable[[object, str], JSON],
    tool_choice: Callable[[object], JSON | None],
) -> JSON:
    """Anthropic's ``tools`` and ``tool_choice`` from a request whose tool and choice
    shapes ``tool_def`` and ``tool_choice`` translate (chat's or Responses')."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not tools:
        if isinstance(choice, dict):
            raise TranslationError(
                "'tool_choice' names a tool but no tools were given", "tool_choice"
            )
        return {}
    if not isinstance(tools, list):
        raise TranslationError("'tools' must be an array", "tools")
    out: JSON = {"tools": [tool_def(tool, f"tools[{i}]") for i, tool in enumerate(tools)]}
    picked = disable_parallel(tool_choice(choice), body.get("parallel_tool_calls"))
    if picked is not None:
        out["tool_choice"] = picked
    return out


def disable_parallel(tool_choice: JSON | None, parallel: object) -> JSON | None:
    """``tool_choice`` with ``parallel_tool_calls: false`` in Anthropic's terms."""
    if parallel is not False:
        return tool_choice
    tool_choice = tool_choice or {"type": "auto"}
    if tool_choice["type"] == "none":
        return tool_choice
    return {**tool_choice, "disable_parallel_tool_use": True}


def _tool_def(tool: object, param: str) -> JSON:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise TranslationError("only function tools are supported", f"{param}.type")
    fn = tool.get("function")
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(fn, dict) or not isinstance(name, str) or not name:
        raise TranslationError("tool needs a function name", f"{param}.function.name")
    schema = fn.get("parameters")
    if schema is None:
        schema = dict(_EMPTY_SCHEMA)
    elif not isinstance(schema, dict):
        raise TranslationError(
            "function parameters must be an object", f"{param}.function.parameters"
        )
    out: JSON = {"name": name, "input_schema": schema}
    description = fn.get("description")
    if isinstance(description, str) and description:
        out["description"] = description
    cache_control = tool.get("cache_control")
    if isinstance(cache_control, dict):
        out["cache_control"] = cache_control
    return out


def _tool_choice(choice: object) -> JSON | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in TOOL_CHOICES:
        return dict(TOOL_CHOICES[choice])
    if isinstance(choice, dict) and choice.get("type") == "function":
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    raise TranslationError(
        "'tool_choice' must be 'auto', 'required', 'none' or a function object", "tool_choice"
    )
