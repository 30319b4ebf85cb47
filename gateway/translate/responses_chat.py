"""OpenAI Responses -> Chat Completions, the request (pure).

The chat request a Responses request means: the gateway counts a Responses prompt
through it (``views``), and it decides which requests keep their state at the provider
(``stateful``). The Anthropic provider serves Responses by its own Messages API
(``responses_anthropic``), not by way of this. What maps:

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

from gateway.translate.common import JSON, TranslationError, text_of

STATEFUL = ("previous_response_id", "background", "conversation", "prompt")
_ROLES = frozenset({"user", "system", "developer", "assistant"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "refusal"})


def stateful(body: JSON) -> str | None:
    """The field that keeps this request's state at the provider, if any."""
    for name in STATEFUL:
        if body.get(name) not in (None, False):
            return name
    return "store" if body.get("store") is True else None


def check_stateless(body: JSON) -> None:
    """Refuse a request whose state lives at the provider: no other can serve it."""
    held = stateful(body)
    if held is not None:
        raise TranslationError(
            f"'{held}' keeps the conversation's state at an OpenAI provider: this request "
            "can be served only there (no cross-provider fallback)",
            held,
        )


def to_chat_request(body: JSON) -> JSON:
    """A Responses request -> the Chat Completions request that means the same."""
    check_stateless(body)
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
    fmt = response_format(body.get("text"))
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


def response_format(text: object) -> JSON | None:
    """A Responses ``text.format`` as a chat ``response_format`` (None: plain text)."""
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": spec}
    raise TranslationError("this text.format cannot be translated", "text.format")
