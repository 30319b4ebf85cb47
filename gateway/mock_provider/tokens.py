"""Token truth for the mock provider: the o200k_base tokenizer, loaded once, lazily.

Generated text is a cycle of fixed words, each exactly one o200k_base token with its
leading space, so "words generated" and "completion tokens" are the same number.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import tiktoken

from accounting.tokens import get_encoding

ENCODING_NAME = "o200k_base"

# Each word, with its leading space, is one o200k_base token (checked on first load).
_WORD_LIST = (
    "the cat and dog sat on a mat with big red ball in my house by river under "
    "blue sky over green hill for some time of day we saw it go near old tree"
)
WORDS: tuple[str, ...] = tuple(" " + word for word in _WORD_LIST.split(" "))

# Per-message and per-request overheads of OpenAI's chat token counting formula.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REQUEST = 3


@functools.cache
def encoding() -> tiktoken.Encoding:
    """The o200k_base encoding; the first call loads it and checks the word list."""
    enc = get_encoding(ENCODING_NAME)
    bad = [word for word in WORDS if len(enc.encode(word)) != 1]
    if bad:
        raise RuntimeError(f"mock provider words are not single {ENCODING_NAME} tokens: {bad}")
    return enc


@functools.lru_cache(maxsize=4096)
def count_text(text: str) -> int:
    """o200k_base tokens in ``text`` (special-token strings are counted as plain text)."""
    if not text:
        return 0
    return len(encoding().encode(text, disallowed_special=()))


@functools.lru_cache(maxsize=256)
def completion_words(count: int) -> tuple[str, ...]:
    """The first ``count`` words of the deterministic completion (one token each)."""
    encoding()
    return tuple(WORDS[i % len(WORDS)] for i in range(count))


def completion_text(count: int) -> str:
    return "".join(completion_words(count))


def content_text(content: Any) -> str:
    """Text of a message's content: a string, or the ``text`` of the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def chat_prompt_tokens(messages: Any, system: Any = None) -> int:
    """OpenAI's counting formula: each message's text tokens + 3, plus 3 per request.

    ``system`` (Anthropic's top-level system prompt) counts like one more message.
    """
    total = TOKENS_PER_REQUEST
    if system:
        total += count_text(content_text(system)) + TOKENS_PER_MESSAGE
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            total += count_text(content_text(content)) + TOKENS_PER_MESSAGE
    return total


def embedding_inputs(value: Any) -> list[Any]:
    """The embeddings ``input`` as a list of items (strings or token-id lists)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if value and all(isinstance(item, int) for item in value):
            return [value]
        return list(value)
    return []


def embedding_tokens(items: Iterable[Any]) -> int:
    """o200k tokens of each string input (token-id lists count their length), summed."""
    total = 0
    for item in items:
        if isinstance(item, str):
            total += count_text(item)
        elif isinstance(item, list):
            total += len(item)
    return total


def token_fragments(text: str, parts: int = 2, max_tokens: int = 4) -> list[tuple[str, int]]:
    """Split ``text`` at token boundaries into fragments of up to ``max_tokens`` tokens.

    Returns (fragment, tokens) pairs whose fragments concatenate back to ``text`` and
    whose token counts sum to ``count_text(text)``. At least ``parts`` fragments are
    produced when the text has that many tokens.
    """
    enc = encoding()
    ids = enc.encode(text, disallowed_special=())
    if not ids:
        return []
    size = max(1, min(max_tokens, len(ids) // parts))
    out: list[tuple[str, int]] = []
    pending = b""
    pending_tokens = 0
    for start in range(0, len(ids), size):
        group = ids[start : start + size]
        pending += b"".join(enc.decode_single_token_bytes(token) for token in group)
        pending_tokens += len(group)
        try:
            fragment = pending.decode("utf-8")
        except UnicodeDecodeError:
            continue  # a multi-byte character spans groups: keep accumulating
        out.append((fragment, pending_tokens))
        pending, pending_tokens = b"", 0
    if pending:
        out.append((pending.decode("utf-8", errors="replace"), pending_tokens))
    return out
