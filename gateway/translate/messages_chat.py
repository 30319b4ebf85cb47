"""Anthropic Messages <-> OpenAI Chat Completions, the request and the whole answer (pure).

An Anthropic Messages request is served on an OpenAI-kind provider by way of Chat
Completions. What maps:

* ``system`` (a string or text blocks) -> a leading system message; user and assistant
  turns with ``text`` and ``image`` blocks (base64 -> a data URL, or a URL);
  ``tool_use`` blocks -> the assistant's ``tool_calls``; ``tool_result`` blocks -> tool
  messages (before the rest of the user's turn); ``thinking`` blocks are dropped.
* ``tools`` (``input_schema`` -> ``parameters``), ``tool_choice`` (``auto``, ``any`` ->
  ``required``, ``tool`` -> a function, ``none``; ``disable_parallel_tool_use`` ->
  ``parallel_tool_calls: false``); ``max_tokens``, ``stop_sequences``, ``temperature``,
  ``top_p``, ``metadata.user_id`` -> ``user``, ``stream``; ``thinking`` enabled with a
  budget -> ``reasoning_effort`` (the inverse table in ``gateway.translate.reasoning``:
  below 4096 ``low``, below 16384 ``medium``, else ``high``).
* Dropped: ``cache_control`` (OpenAI caches prompts by itself; its cache reads are
  reported back as ``cache_read_input_tokens``), ``top_k``, ``thinking`` that maps to
  no effort (disabled, adaptive, a budget under 1024), ``service_tier``.
* Refused (``TranslationError``): document, server-tool and other block types with no
  Chat equivalent, and non-custom tools.
"""

from __future__ import annotations

import json
import time
from typing import Any

from gateway.translate.common import JSON, TranslationError, text_of, usage_numbers
from gateway.translate.reasoning import effort_for

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def to_chat_request(body: JSON) -> JSON:
    """A Messages request -> the Chat Completions request that means the same."""
    messages: list[JSON] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": text_of(system)})
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise TranslationError("'messages' must be a non-empty list", "messages")
    for index, message in enumerate(raw):
        messages += _turn(message, f"messages[{index}]")
    out: JSON = {"model": body.get("model"), "messages": messages}
    if body.get("max_tokens") is not None:
        out["max_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p", "stream"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("stop_sequences"):
        out["stop"] = body["stop_sequences"]
    if body.get("stream") is True:
        out["stream_options"] = {"include_usage": True}
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    out.update(_tools(body))
    effort = effort_for(body.get("thinking"))
    if effort is not None:
        out["reasoning_effort"] = effort
    return out


def _turn(message: object, param: str) -> list[JSON]:
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise TranslationError("each message needs the role user or assistant", param)
    role, content = message["role"], message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise TranslationError("content must be a string or a list of blocks", param)
    if role == "assistant":
        return [_assistant(content, param)]
    results: list[JSON] = []
    parts: list[JSON] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result":
            results.append(_tool_result(block))
        else:
            parts.append(_user_part(block, kind, param))
    return results + ([{"role": "user", "content": parts}] if parts else [])


def _user_part(block: Any, kind: object, param: str) -> JSON:
    if kind == "text":
        return {"type": "text", "text": str(block.get("text") or "")}
    if kind == "image":
        source = block.get("source") or {}
        if source.get("type") == "base64":
            url = f"data:{source.get('media_type')};base64,{source.get('data')}"
        elif source.get("type") == "url":
            url = str(source.get("url"))
        else:
            raise TranslationError("this image source cannot be translated", param)
        return {"type": "image_url", "image_url": {"url": url}}
    raise TranslationError(f"content blocks of type {kind!r} cannot be translated", param)


def _tool_result(block: JSON) -> JSON:
    content = text_of(block.get("content"))
    if block.get("is_error") is True:
        content = "Error: " + content
    return {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": content}


def _assistant(content: list[Any], param: str) -> JSON:
    texts: list[str] = []
    calls: list[JSON] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {})
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
        elif kind not in ("thinking", "redacted_thinking"):
            raise TranslationError(f"content blocks of type {kind!r} cannot be translated", param)
    out: JSON = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        out["tool_calls"] = calls
    return out


def _tools(body: JSON) -> JSON:
    out: JSON = {}
    tools = body.get("tools")
    if tools:
        out["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return out
    kind = choice.get("type")
    if kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif kind in ("auto", "any", "none"):
        out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if choice.get("disable_parallel_tool_use") is True and tools:
        out["parallel_tool_calls"] = False
    return out


def _tool(tool: object, param: str) -> JSON:
    if not isinstance(tool, dict) or tool.get("type", "custom") != "custom":
        raise TranslationError("only custom (function) tools can be translated", param)
    function: JSON = {"name": tool.get("name"), "parameters": tool.get("input_schema") or {}}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


# ----------------------------------------------------------------- the answer


def message_usage(usage: object) -> JSON:
    """A chat ``usage`` block -> a Messages ``usage`` block (cache reads apart)."""
    prompt, completion, cached = usage_numbers(usage)
    return {
        "input_tokens": prompt - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": completion,
    }


def message_shell(message_id: str, model: object) -> JSON:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": message_usage(None),
    }


def tool_input(arguments: object) -> JSON:
    """A tool call's arguments as the object Anthropic's ``input`` is ({} if not one)."""
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def from_chat_response(completion: JSON, body: JSON) -> JSON:
    """A ``chat.completion`` -> the Messages ``message`` object."""
    ident = str(completion.get("id") or f"{time.time_ns():x}")
    out = message_shell("msg_" + ident, body.get("model"))
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    message = choice.get("message") if isinstance(choice, dict) else None
    message = message if isinstance(message, dict) else {}
    if isinstance(message.get("content"), str) and message["content"]:
        out["content"].append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        out["content"].append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": tool_input(function.get("arguments")),
            }
        )
    reason = choice.get("finish_reason") if isinstance(choice, dict) else None
    out["stop_reason"] = STOP_REASONS.get(str(reason), "end_turn")
    out["usage"] = message_usage(completion.get("usage"))
    return out
