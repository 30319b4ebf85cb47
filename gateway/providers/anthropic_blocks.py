"""OpenAI message content as Anthropic content blocks: text, images and documents
(URLs and data URLs), assistant tool calls and tool results (``cache_control`` kept).
Part of ``anthropic_translate``'s request side; nothing here is Anthropic-only state."""

from __future__ import annotations

import json
from typing import Any

JSON = dict[str, Any]


class TranslationError(ValueError):
    """The OpenAI request cannot be expressed for Anthropic; ``param`` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def content_blocks(content: object, param: str) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError(
            "content must be a string or an array of content parts", f"{param}.content"
        )
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        block = _part_block(part, f"{param}.content[{j}]")
        if block is not None:
            blocks.append(block)
    return blocks


def _part_block(part: object, param: str) -> JSON | None:
    if not isinstance(part, dict):
        raise TranslationError("each content part must be an object", param)
    kind = part.get("type")
    block: JSON | None
    if kind in ("text", "refusal"):
        text = part.get(kind)
        if not isinstance(text, str):
            raise TranslationError(f"'{kind}' must be a string", f"{param}.{kind}")
        block = {"type": "text", "text": text} if text else None
    elif kind == "image_url":
        block = _image_block(part.get("image_url"), param)
    elif kind == "file":
        block = _document_block(part.get("file"), param)
    else:
        raise TranslationError(f"unsupported content part type {kind!r}", f"{param}.type")
    cache_control = part.get("cache_control")
    if block is not None and isinstance(cache_control, dict):
        block["cache_control"] = cache_control
    return block


def _image_block(image_url: object, param: str) -> JSON:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    return image_block(url, f"{param}.image_url.url")


def image_block(url: object, param: str) -> JSON:
    """An image block for an http(s) URL or a base64 data URL; ``param`` names the URL."""
    if not isinstance(url, str) or not url:
        raise TranslationError("image_url.url must be a non-empty string", param)
    lowered = url[:8].lower()
    if lowered.startswith("data:"):
        source = _data_url_source(url, param)
        if not source["media_type"].startswith("image/"):
            raise TranslationError("image data URL must have an image/* media type", param)
        return {"type": "image", "source": source}
    if lowered.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise TranslationError("image_url must be an http(s) URL or a base64 data URL", param)


def _document_block(file: object, param: str) -> JSON:
    data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(file, dict) or not isinstance(data, str):
        raise TranslationError("only inline file_data is supported in file parts", f"{param}.file")
    return document_block(data, file.get("filename"), f"{param}.file.file_data")


def document_block(data: str, filename: object, param: str) -> JSON:
    """A PDF document block for a base64 data URL; ``param`` names the data."""
    source = _data_url_source(data, param)
    if source["media_type"] != "application/pdf":
        raise TranslationError("only PDF files are supported", param)
    block: JSON = {"type": "document", "source": source}
    if isinstance(filename, str) and filename:
        block["title"] = filename
    return block


def _data_url_source(url: str, param: str) -> JSON:
    header, sep, data = url[len("data:") :].partition(",")
    fields = [field.strip().lower() for field in header.split(";")]
    if not sep or "base64" not in fields[1:] or not fields[0] or not data.strip():
        raise TranslationError("data URL must be of the form data:<type>;base64,<data>", param)
    return {"type": "base64", "media_type": fields[0], "data": data.strip()}


def assistant_blocks(msg: JSON, param: str) -> list[JSON]:
    blocks = content_blocks(msg.get("content"), param)
    calls = msg.get("tool_calls")
    if calls is None:
        return blocks
    if not isinstance(calls, list):
        raise TranslationError("'tool_calls' must be an array", f"{param}.tool_calls")
    for k, call in enumerate(calls):
        blocks.append(_tool_use_block(call, f"{param}.tool_calls[{k}]"))
    return blocks


def _tool_use_block(call: object, param: str) -> JSON:
    if not isinstance(call, dict) or call.get("type", "function") != "function":
        raise TranslationError("each tool call must be a function call object", param)
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError("tool call 'id' must be a non-empty string", f"{param}.id")
    fn = call.get("function")
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(fn, dict) or not isinstance(name, str) or not name:
        raise TranslationError("tool call needs a function name", f"{param}.function.name")
    arguments = tool_arguments(fn.get("arguments"), f"{param}.function.arguments")
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def tool_arguments(raw: object, param: str) -> JSON:
    """A tool call's JSON arguments as an object (``{}`` when they are not one)."""
    if isinstance(raw, dict):
        return raw
    if raw is None:
        return {}
    if not isinstance(raw, str):
        raise TranslationError("tool call arguments must be a JSON string", param)
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def tool_result_block(msg: JSON, param: str) -> JSON:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError("tool messages need a 'tool_call_id'", f"{param}.tool_call_id")
    block: JSON = {"type": "tool_result", "tool_use_id": call_id}
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
        return block
    blocks = content_blocks(content, param)
    if blocks:
        block["content"] = blocks
    return block
