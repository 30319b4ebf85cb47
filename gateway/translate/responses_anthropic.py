"""OpenAI Responses <-> Anthropic Messages: the responses -> anthropic pair (pure).

A Responses request is served on an Anthropic-kind provider by its own Messages API:
``to_anthropic_request`` builds the body the native ``/v1/messages`` path sends as it
is (the caller names the upstream model and the output limit, as for a Messages call),
``from_anthropic_response`` and ``responses_anthropic_stream`` bring the answer and its
stream events back, ``error_body`` an error. What maps:

* ``instructions`` and system/developer message items -> ``system``; ``input`` (a
  string or items) -> alternating turns: message items (``input_text``,
  ``output_text``, ``refusal`` -> text; ``input_image`` URL or data URL -> image;
  ``input_file`` PDF data URL -> document), ``function_call`` -> ``tool_use`` blocks of
  the assistant's turn, ``function_call_output`` -> ``tool_result`` blocks (its text,
  images and files kept). ``reasoning`` items are dropped: their content is the
  provider's own (OpenAI's encrypted) and Anthropic takes back only thinking it signed.
* function ``tools`` (``parameters`` -> ``input_schema``), ``tool_choice`` (``auto``,
  ``required`` -> ``any``, ``none``, a function -> ``tool``), ``parallel_tool_calls:
  false`` -> ``disable_parallel_tool_use``; ``text.format`` ``json_schema`` /
  ``json_object`` -> a forced tool whose input is the answer (structured output, not
  together with tools); ``max_output_tokens`` -> ``max_tokens`` (else the model's
  limit); ``temperature`` (clamped to 0..1), ``top_p``; ``user`` ->
  ``metadata.user_id``; ``stream``; ``reasoning.effort`` -> ``thinking``, where it maps
  (the table: ``gateway.translate.reasoning``).
* Dropped: ``include``, ``truncation``, ``metadata``, ``service_tier``, ``store:
  false``, ``text.verbosity``, ``reasoning.summary``, ``prompt_cache_key``.
* Refused (``TranslationError``): state kept at the provider (``stateful``), built-in
  tools, item and part types with no Messages equivalent (item references, file ids).

The answer: ``thinking`` blocks -> ``reasoning`` items (the text as a ``summary_text``;
redacted thinking has no text and is left out), ``text`` -> message items, ``tool_use``
-> ``function_call`` items (the forced tool of a JSON format -> the message's text);
``max_tokens`` -> ``incomplete`` (``max_output_tokens``), ``refusal`` -> ``incomplete``
(``content_filter``). Usage: the whole prompt as ``input_tokens`` (cache reads and
writes in it), cache reads as ``cached_tokens``; thinking is inside ``output_tokens``
(Anthropic does not count it apart, so ``reasoning_tokens`` is 0).
"""

from __future__ import annotations

import time

import orjson

from accounting.usage import Usage
from gateway.providers.anthropic_blocks import document_block, image_block, tool_arguments
from gateway.providers.anthropic_errors import error_to_openai
from gateway.providers.anthropic_stream import map_stop_reason
from gateway.providers.anthropic_translate import (
    STRUCTURED_DESCRIPTION,
    TOOL_CHOICES,
    append_turn,
    sampling,
    structured_output,
    system_value,
    tools_of,
)
from gateway.providers.anthropic_usage import usage_from_anthropic
from gateway.translate.common import JSON, TranslationError, obj
from gateway.translate.reasoning import with_thinking
from gateway.translate.responses_chat import check_stateless, response_format

_TEXT_PARTS = {"input_text": "text", "output_text": "text", "text": "text", "refusal": "refusal"}
_EMPTY_SCHEMA: JSON = {"type": "object", "properties": {}}


def to_anthropic_request(body: JSON, upstream_model: str, default_max_tokens: int) -> JSON:
    """A Responses request -> the Anthropic Messages request that means the same."""
    check_stateless(body)
    system, messages = conversation(body)
    out: JSON = {
        "model": upstream_model,
        "messages": messages,
        "max_tokens": _max_tokens(body, default_max_tokens),
    }
    if system is not None:
        out["system"] = system
    out.update(sampling({k: body[k] for k in ("temperature", "top_p") if k in body}))
    out.update(_tools(body))
    forced = forced_tool(body)
    if forced is not None:
        name, schema = forced
        tool = {"name": name, "description": STRUCTURED_DESCRIPTION, "input_schema": schema}
        out["tools"] = [tool]
        out["tool_choice"] = {"type": "tool", "name": name}
    if isinstance(body.get("stream"), bool):
        out["stream"] = body["stream"]
    user = body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    return with_thinking(out, obj(body.get("reasoning")).get("effort"), "reasoning.effort")


def conversation(body: JSON) -> tuple[str | list[JSON] | None, list[JSON]]:
    """(``system``, ``messages``) of the request's ``instructions`` and ``input``."""
    system: list[JSON] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        system.append({"type": "text", "text": instructions})
    raw = body.get("input")
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise TranslationError("'input' must be a string or a list of items", "input")
    turns: list[JSON] = []
    for index, item in enumerate(items):
        _add_item(system, turns, item, f"input[{index}]")
    if not turns:
        raise TranslationError("'input' has no message to answer", "input")
    return system_value(system), turns


def _add_item(system: list[JSON], turns: list[JSON], item: object, param: str) -> None:
    if not isinstance(item, dict):
        raise TranslationError("each input item must be an object", param)
    kind = item.get("type", "message")
    role = item.get("role")
    if kind == "message" and role in ("system", "developer"):
        blocks = _blocks(item.get("content"), f"{param}.content")
        if any(block["type"] != "text" for block in blocks):
            raise TranslationError("system messages may only contain text", f"{param}.content")
        system.extend(blocks)
    elif kind == "message" and role in ("user", "assistant"):
        append_turn(turns, str(role), _blocks(item.get("content"), f"{param}.content"))
    elif kind == "message":
        raise TranslationError("a message item needs a role", f"{param}.role")
    elif kind == "function_call":
        append_turn(turns, "assistant", [_tool_use(item, param)])
    elif kind == "function_call_output":
        append_turn(turns, "user", [_tool_result(item, param)])
    elif kind != "reasoning":  # reasoning items: the provider's own, dropped
        raise TranslationError(f"input items of type {kind!r} cannot be translated", param)


def _blocks(content: object, param: str) -> list[JSON]:
    """Content blocks of a message's ``content`` (or a tool output); ``param`` names it."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError("content must be a string or a list of parts", param)
    blocks = [_part(part, f"{param}[{index}]") for index, part in enumerate(content)]
    return [block for block in blocks if block is not None]


def _part(part: object, param: str) -> JSON | None:
    kind = part.get("type") if isinstance(part, dict) else None
    if isinstance(part, dict) and isinstance(kind, str) and kind in _TEXT_PARTS:
        text = part.get(_TEXT_PARTS[kind])
        if not isinstance(text, str):
            raise TranslationError(f"'{kind}' parts need a string", param)
        return {"type": "text", "text": text} if text else None
    if isinstance(part, dict) and kind == "input_image":
        return image_block(part.get("image_url"), f"{param}.image_url")
    if isinstance(part, dict) and kind == "input_file":
        data = part.get("file_data")
        if not isinstance(data, str):
            raise TranslationError("only input_file parts with file_data can be translated", param)
        return document_block(data, part.get("filename"), f"{param}.file_data")
    raise TranslationError(f"content parts of type {kind!r} cannot be translated", param)


def _call_id(item: JSON, param: str) -> str:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError("the item needs a 'call_id'", f"{param}.call_id")
    return call_id


def _tool_use(item: JSON, param: str) -> JSON:
    call_id, name = _call_id(item, param), item.get("name")
    if not isinstance(name, str) or not name:
        raise TranslationError("a function_call item needs a 'name'", f"{param}.name")
    arguments = tool_arguments(item.get("arguments"), f"{param}.arguments")
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def _tool_result(item: JSON, param: str) -> JSON:
    block: JSON = {"type": "tool_result", "tool_use_id": _call_id(item, param)}
    output = item.get("output")
    if output is None or output == "":
        return block
    blocks = output if isinstance(output, str) else _blocks(output, f"{param}.output")
    if blocks:
        block["content"] = blocks
    return block


def _tools(body: JSON) -> JSON:
    return tools_of(body, _tool, _tool_choice)


def _tool(tool: object, param: str) -> JSON:
    kind = tool.get("type") if isinstance(tool, dict) else None
    if not isinstance(tool, dict) or kind != "function":
        raise TranslationError(f"built-in tools ({kind!r}) cannot be translated", param)
    name, schema = tool.get("name"), tool.get("parameters")
    if not isinstance(name, str) or not name:
        raise TranslationError("a function tool needs a name", f"{param}.name")
    if schema is not None and not isinstance(schema, dict):
        raise TranslationError("function parameters must be an object", f"{param}.parameters")
    out: JSON = {"name": name, "input_schema": dict(_EMPTY_SCHEMA) if schema is None else schema}
    if isinstance(tool.get("description"), str) and tool["description"]:
        out["description"] = tool["description"]
    return out


def _tool_choice(choice: object) -> JSON | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in TOOL_CHOICES:
        return dict(TOOL_CHOICES[choice])
    name = choice.get("name") if isinstance(choice, dict) else None
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(name, str):
        return {"type": "tool", "name": name}
    raise TranslationError(
        "only 'auto', 'required', 'none' and function tool choices can be translated",
        "tool_choice",
    )


def forced_tool(body: JSON) -> tuple[str, JSON] | None:
    """(name, input schema) of the forced tool serving a JSON ``text.format``, if any."""
    fmt = response_format(body.get("text"))
    if fmt is None:
        return None
    if body.get("tools"):
        raise TranslationError(
            "text.format together with tools cannot be translated for this model", "text.format"
        )
    try:
        return structured_output({"response_format": fmt})
    except TranslationError as exc:
        raise TranslationError(exc.message, "text.format") from None


def structured_name(body: JSON) -> str | None:
    """The forced tool whose input is the answer (a JSON ``text.format``), if any."""
    forced = forced_tool(body)
    return forced[0] if forced is not None else None


def _max_tokens(body: JSON, default: int) -> int:
    value = body.get("max_output_tokens")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TranslationError(
            "'max_output_tokens' must be a positive integer", "max_output_tokens"
        )
    return value


# ----------------------------------------------------------------- the answer


def response_usage(usage: Usage) -> JSON:
    """The gateway's usage -> a Responses ``usage`` block (thinking is in the output)."""
    prompt, completion = usage.input_tokens or 0, usage.output_tokens or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens or 0},
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


def reasoning_item(item_id: str, text: str | None) -> JSON:
    """A reasoning item; ``text`` None while it streams (its summary comes at the end)."""
    summary = [] if text is None else [{"type": "summary_text", "text": text}]
    return {"type": "reasoning", "id": item_id, "summary": summary}


def finished(response: JSON, stop_reason: object) -> JSON:
    """``response`` marked completed, or incomplete when the output limit or a refusal
    cut it."""
    finish = map_stop_reason(stop_reason)
    if finish in ("length", "content_filter"):
        response["status"] = "incomplete"
        reason = "max_output_tokens" if finish == "length" else "content_filter"
        response["incomplete_details"] = {"reason": reason}
    else:
        response["status"] = "completed"
    return response


def ident_of(message_id: object) -> str:
    """The id the response's items are named after (Anthropic's message id, unprefixed)."""
    ident = str(message_id) if isinstance(message_id, str) and message_id else ""
    return ident.removeprefix("msg_") or f"{time.time_ns():x}"


def compact(value: object) -> str:
    return orjson.dumps(value if value is not None else {}).decode()


def output_item(block: object, ident: str, index: int, forced: str | None) -> JSON | None:
    """The output item of the answer's content block ``index`` (None: none shows)."""
    if not isinstance(block, dict):
        return None
    kind = block.get("type")
    if kind == "text":
        return message_item(f"msg_{ident}_{index}", str(block.get("text") or ""))
    if kind == "tool_use" and forced is not None and block.get("name") == forced:
        return message_item(f"msg_{ident}_{index}", compact(block.get("input")))
    if kind == "tool_use":
        call_id, name = str(block.get("id") or ""), str(block.get("name") or "")
        arguments = compact(block.get("input"))
        return call_item(f"fc_{ident}_{index}", call_id, name, arguments, "completed")
    if kind == "thinking":
        return reasoning_item(f"rs_{ident}_{index}", str(block.get("thinking") or ""))
    return None  # redacted thinking, server tools: nothing a Responses client can read


def from_anthropic_response(message: JSON, body: JSON, created: int) -> JSON:
    """An Anthropic ``message`` -> the Responses ``response`` object."""
    ident = ident_of(message.get("id"))
    response = response_shell(body, "resp_" + ident, created, "")
    forced = structured_name(body)
    content = message.get("content")
    blocks = content if isinstance(content, list) else []
    items = [output_item(block, ident, index, forced) for index, block in enumerate(blocks)]
    response["output"] = [item for item in items if item is not None]
    response["usage"] = response_usage(usage_from_anthropic(message.get("usage")))
    return finished(response, message.get("stop_reason"))


# ----------------------------------------------------------------- errors


def error_body(status: int, body: object) -> bytes:
    """An Anthropic error body -> the OpenAI error body a Responses client reads."""
    return orjson.dumps(error_to_openai(status, body))


def error_event(payload: JSON) -> JSON:
    """An Anthropic stream ``error`` event -> the data of a Responses ``error`` event."""
    error = error_to_openai(500, payload)
    inner = error["error"]
    code = inner["code"] or inner["type"]
    return {"code": code, "message": inner["message"], "param": None, **error}
