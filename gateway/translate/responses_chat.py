"""OpenAI Responses <-> Chat Completions, the request and the whole answer (pure).

The gateway serves a Responses request on a provider that does not speak it by way of
Chat Completions, whose translation to every provider already exists. What maps:

* ``instructions`` -> a leading system message; ``input`` (a string, or a list of
  items) -> messages: message items of every role (``input_text``/``output_text``/
  ``input_image`` parts), ``function_call`` items -> the assistant's ``tool_calls``
  (consecutive calls grouped into one turn), ``function_call_output`` -> tool
  messages. ``reasoning`` items are dropped (their content is the provider's own).
* function ``tools`` and ``tool_choice``, ``parallel_tool_calls``; ``text.format``
  (``json_schema``, ``json_object``) -> ``response_format``; ``max_output_tokens``,
  ``temperature``, ``top_p``, ``user``, ``stream``; ``reasoning.effort`` ->
  ``reasoning_effort``.
* Refused (``TranslationError``): state kept at the provider (``previous_response_id``,
  ``store: true``, ``background``, ``conversation``, a stored ``prompt``), built-in
  tools (web search, file search, computer use, ...), and item types with no Chat
  equivalent.
"""

from __future__ import annotations

import json
import time

from gateway.translate.common import JSON, TranslationError, text_of, usage_numbers

STATEFUL = ("previous_response_id", "background", "conversation", "prompt")
_ROLES = frozenset({"user", "system", "developer", "assistant"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "refusal"})


def stateful(body: JSON) -> str | None:
    """The field that keeps this request's state at the provider, if any."""
    for name in STATEFUL:
        if body.get(name) not in (None, False):
            return name
    return "store" if body.get("store") is True else None


def to_chat_request(body: JSON) -> JSON:
    """A Responses request -> the Chat Completions request that means the same."""
    held = stateful(body)
    if held is not None:
        raise TranslationError(
            f"'{held}' keeps the conversation's state at an OpenAI provider: this request "
            "can be served only there (no cross-provider fallback)",
            held,
        )
    messages: list[JSON] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    messages += input_messages(body.get("input"))
    out: JSON = {"model": body.get("model"), "messages": messages}
    for name in ("temperature", "top_p", "user", "stream", "parallel_tool_calls"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("max_output_tokens") is not None:
        out["max_completion_tokens"] = body["max_output_tokens"]
    if body.get("stream") is True:
        out["stream_options"] = {"include_usage": True}
    out.update(_tools(body))
    fmt = _response_format(body.get("text"))
    if fmt is not None:
        out["response_format"] = fmt
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        out["reasoning_effort"] = reasoning["effort"]
    return out


def input_messages(raw: object) -> list[JSON]:
    """The ``input`` of a Responses request as chat messages."""
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise TranslationError("'input' must be a string or a list of items", "input")
    messages: list[JSON] = []
    for index, item in enumerate(raw):
        _add_item(messages, item, f"input[{index}]")
    if not messages:
        raise TranslationError("'input' has no message to answer", "input")
    return messages


def _add_item(messages: list[JSON], item: object, param: str) -> None:
    if not isinstance(item, dict):
        raise TranslationError("each input item must be an object", param)
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in _ROLES:
            raise TranslationError("a message item needs a role", f"{param}.role")
        messages.append({"role": role, "content": _content(item.get("content"), param)})
    elif kind == "function_call":
        call = {
            "id": str(item.get("call_id") or item.get("id") or ""),
            "type": "function",
            "function": {"name": item.get("name"), "arguments": item.get("arguments") or "{}"},
        }
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and "tool_calls" in last:
            last["tool_calls"].append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        content = output if isinstance(output, str) else text_of(output)
        messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": content})
    elif kind != "reasoning":
        raise TranslationError(f"input items of type {kind!r} cannot be translated", param)


def _content(content: object, param: str) -> str | list[JSON]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise TranslationError("message content must be a string or a list", f"{param}.content")
    parts: list[JSON] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS:
            parts.append({"type": "text", "text": str(part.get("text") or part.get("refusal"))})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        else:
            raise TranslationError(f"content parts of type {kind!r} cannot be translated", param)
    return parts


def _tools(body: JSON) -> JSON:
    tools = body.get("tools")
    out: JSON = {}
    if tools:
        if not isinstance(tools, list):
            raise TranslationError("'tools' must be a list", "tools")
        out["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        out["tool_choice"] = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif choice is not None:
        raise TranslationError("only function tool choices can be translated", "tool_choice")
    return out


def _tool(tool: object, param: str) -> JSON:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise TranslationError(f"built-in tools ({kind!r}) cannot be translated", param)
    function: JSON = {"name": tool.get("name"), "parameters": tool.get("parameters") or {}}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _response_format(text: object) -> JSON | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": spec}
    raise TranslationError("this text.format cannot be translated", "text.format")


# ----------------------------------------------------------------- the answer


def response_usage(usage: object) -> JSON:
    """A chat ``usage`` block -> a Responses ``usage`` block."""
    prompt, completion, cached = usage_numbers(usage)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def response_shell(body: JSON, response_id: str, created: int, status: str) -> JSON:
    """A Responses ``response`` object without its output."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "model": body.get("model"),
        "output": [],
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "max_output_tokens": body.get("max_output_tokens"),
        "text": body.get("text") or {"format": {"type": "text"}},
        "usage": None,
    }


def message_item(item_id: str, text: str, status: str = "completed") -> JSON:
    part = {"type": "output_text", "text": text, "annotations": []}
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [part] if status == "completed" else [],
    }


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> JSON:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def finished(response: JSON, finish_reason: str | None) -> JSON:
    """``response`` marked completed, or incomplete when the output limit cut it."""
    if finish_reason == "length":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    elif finish_reason == "content_filter":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "content_filter"}
    else:
        response["status"] = "completed"
    return response


def from_chat_response(completion: JSON, body: JSON) -> JSON:
    """A ``chat.completion`` -> the Responses ``response`` object."""
    ident = str(completion.get("id") or f"{time.time_ns():x}")
    created = completion.get("created")
    response = response_shell(body, "resp_" + ident, created if isinstance(created, int) else 0, "")
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    message = choice.get("message") if isinstance(choice, dict) else None
    message = message if isinstance(message, dict) else {}
    output: list[JSON] = []
    if isinstance(message.get("content"), str) and message["content"]:
        output.append(message_item("msg_" + ident, message["content"]))
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        output.append(
            call_item(
                f"fc_{ident}_{index}",
                str(call.get("id")),
                str(function.get("name")),
                _arguments(function.get("arguments")),
                "completed",
            )
        )
    response["output"] = output
    response["usage"] = response_usage(completion.get("usage"))
    return finished(response, choice.get("finish_reason") if isinstance(choice, dict) else None)


def _arguments(raw: object) -> str:
    return raw if isinstance(raw, str) else json.dumps(raw or {})
