"""Token counting with tiktoken, for estimates when a provider reports no usage.

Encodings are loaded lazily, once per process, under a lock; ``warm`` preloads them so
the first request pays no loading cost. After loading, counting is pure CPU work with
no I/O. Special-token text in user input (``"<|endoftext|>"``) is counted as ordinary
text and never raises.

Non-OpenAI models (``claude-*`` and anything unrecognised) are counted with
``o200k_base``. That is an approximation: Anthropic's tokenizer is not public, and its
counts are typically within some tens of percent of o200k's. Provider-reported usage
always replaces these estimates when it arrives.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tiktoken

__all__ = [
    "IMAGE_PART_TOKENS",
    "count_completion_text",
    "count_text",
    "encoding_name_for",
    "estimate_chat_prompt",
    "estimate_embedding_input",
    "prompt_upper_bound",
    "tokenizer_is_exact",
    "upper_bound_of_count",
    "warm",
]

O200K = "o200k_base"
CL100K = "cl100k_base"

# Every image part counts this fixed amount: OpenAI's high-detail cost of a 1024x1024
# image (85 base + 4 tiles * 170). The real size is unknown without fetching the image,
# so this typical value is used for every image whatever its size or detail setting.
IMAGE_PART_TOKENS = 765

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

_O200K_PREFIXES = (
    "gpt-4o",
    "chatgpt-4o",
    "gpt-4.1",
    "gpt-4.5",
    "gpt-5",
    "gpt-oss",
    "o1",
    "o3",
    "o4",
)
_CL100K_PREFIXES = ("gpt-4", "gpt-3.5", "gpt-35", "text-embedding-")
_IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})
_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})

_lock = threading.Lock()
_encodings: dict[str, tiktoken.Encoding] = {}


def _base_model_name(model: str) -> str:
    """Lower-case name without a provider prefix ("openai/...") or fine-tune wrapper."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    if name.startswith("ft:"):
        name = name[3:]
    return name


def encoding_name_for(model: str) -> str:
    """The tiktoken encoding used to count ``model``'s tokens."""
    name = _base_model_name(model)
    if name.startswith(_O200K_PREFIXES):
        return O200K
    if name.startswith(_CL100K_PREFIXES):
        return CL100K
    return O200K  # newer OpenAI models and non-OpenAI models (approximation)


# How far another tokenizer may count above o200k_base for the same text, for models
# whose own tokenizer is not tiktoken's (Claude, and any model name tiktoken does not
# know). An assumed bound, not a measurement of every text: near a cap the reservation
# uses it, and a provider's own count always replaces it once reported.
OTHER_TOKENIZER_FACTOR_PERCENT = 135


def tokenizer_is_exact(model: str) -> bool:
    """True when tiktoken's encoding is the model's own tokenizer (OpenAI models)."""
    return _base_model_name(model).startswith(_O200K_PREFIXES + _CL100K_PREFIXES)


def upper_bound_of_count(count: int, model: str) -> int:
    """A count of the model's own tokens that tiktoken's ``count`` cannot undershoot:
    the count itself for OpenAI models, else scaled by the documented factor."""
    if tokenizer_is_exact(model):
        return count
    return -(-count * OTHER_TOKENIZER_FACTOR_PERCENT // 100)


BUNDLED_ENCODINGS = Path(__file__).with_name("encodings")


def get_encoding(name: str) -> tiktoken.Encoding:
    """tiktoken's encoding, loaded with no network: unless the user named a cache
    (``TIKTOKEN_CACHE_DIR``), tiktoken is pointed at the copies spendgate ships."""
    if not os.environ.get("TIKTOKEN_CACHE_DIR") and BUNDLED_ENCODINGS.is_dir():
        os.environ["TIKTOKEN_CACHE_DIR"] = str(BUNDLED_ENCODINGS)
    enc = tiktoken.get_encoding(name)
    # The Rust core keeps its own copy of the ranks; tiktoken's Python-side dict is
    # only read when pickling an Encoding, and costs ~30 MB for o200k_base.
    if isinstance(getattr(enc, "_mergeable_ranks", None), dict):
        enc._mergeable_ranks = {}
    return enc


def _encoding(name: str) -> tiktoken.Encoding:
    enc = _encodings.get(name)
    if enc is not None:
        return enc
    with _lock:
        enc = _encodings.get(name)
        if enc is None:
            enc = get_encoding(name)
            _encodings[name] = enc
        return enc


def warm(models: Iterable[str]) -> None:
    """Load the encodings for ``models`` now rather than on first use."""
    for name in {encoding_name_for(m) for m in models}:
        _encoding(name)


def count_text(text: str, model: str) -> int:
    """Tokens of ``text`` under ``model``'s encoding; special tokens count as text."""
    if not text:
        return 0
    return len(_encoding(encoding_name_for(model)).encode_ordinary(text))


def count_completion_text(text: str, model: str) -> int:
    """Tokens of completion text received so far (a stream cut off before its usage)."""
    return count_text(text, model)


def _content_tokens(content: object, model: str) -> int:
    """Tokens of a message's content: a string, or a list of content parts.

    Text parts count their text; each image part counts ``IMAGE_PART_TOKENS``; other
    parts (audio, files) are not counted.
    """
    if isinstance(content, str):
        return count_text(content, model)
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if isinstance(part, str):
            total += count_text(part, model)
        elif isinstance(part, dict):
            kind = part.get("type")
            if kind in _IMAGE_PART_TYPES:
                total += IMAGE_PART_TOKENS
            elif kind in _TEXT_PART_TYPES or kind == "refusal":
                text = part.get("text", part.get("refusal"))
                if isinstance(text, str):
                    total += count_text(text, model)
    return total


def _tool_calls_tokens(tool_calls: object, model: str) -> int:
    if not isinstance(tool_calls, list):
        return 0
    total = 0
    for call in tool_calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        for key in ("name", "arguments"):
            value = function.get(key)
            if isinstance(value, str):
                total += count_text(value, model)
    return total


def _message_tokens(message: object, model: str) -> int:
    if not isinstance(message, dict):
        return 0
    total = TOKENS_PER_MESSAGE + _content_tokens(message.get("content"), model)
    name = message.get("name")
    if isinstance(name, str) and name:
        total += count_text(name, model) + TOKENS_PER_NAME
    total += _tool_calls_tokens(message.get("tool_calls"), model)
    function_call = message.get("function_call")  # legacy single function call
    if isinstance(function_call, dict):
        total += _tool_calls_tokens([{"function": function_call}], model)
    return total


def _json_tokens(value: Any, model: str) -> int:
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return 0
    return count_text(text, model)


def estimate_chat_prompt(body: dict[str, Any], model: str) -> int:
    """Estimated prompt tokens of a chat completions request body.

    OpenAI's counting recipe: each message costs 3 tokens plus its content (text, and
    ``IMAGE_PART_TOKENS`` per image part), plus its ``name`` and 1, plus the name and
    arguments of its tool calls; the reply is primed with 3 more tokens. Tool (and
    legacy function) definitions add the tokens of their compact JSON. For plain text
    messages the result is exactly ``sum(count_text(content) + 3) + 3``. The role is
    not counted. Malformed parts of the body are skipped, never raised on.
    """
    messages = body.get("messages")
    total = REPLY_PRIMING_TOKENS
    if isinstance(messages, list):
        total += sum(_message_tokens(m, model) for m in messages)
    for key in ("tools", "functions"):
        definitions = body.get(key)
        if definitions:
            total += _json_tokens(definitions, model)
    return total


def estimate_embedding_input(body: dict[str, Any], model: str) -> int:
    """Estimated input tokens of an embeddings request body.

    ``input`` may be a string, a list of strings, a list of token ids (its length), or
    a list of token-id lists (the sum of their lengths). Anything else counts 0.
    """
    value = body.get("input")
    if isinstance(value, str):
        return count_text(value, model)
    if not isinstance(value, list):
        return 0
    total = 0
    for item in value:
        if isinstance(item, str):
            total += count_text(item, model)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += 1
        elif isinstance(item, list):
            total += len(item)
    return total


def prompt_upper_bound(body: dict[str, Any], body_bytes: int) -> int:
    """A bound no tokenizer count of the prompt can exceed, without tokenizing.

    A byte-level BPE token is at least one byte, so the text's tokens are at most its
    UTF-8 bytes, which the JSON body holds (escaping only lengthens it); the JSON of
    each message also outweighs its fixed 3 tokens. What the body does not hold is
    each image part's fixed ``IMAGE_PART_TOKENS``. Used to reserve a budget before
    paying for an exact count.
    """
    images = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            images += sum(
                1
                for part in content
                if isinstance(part, dict) and part.get("type") in _IMAGE_PART_TYPES
            )
    return body_bytes + images * IMAGE_PART_TOKENS + REPLY_PRIMING_TOKENS
