"""One client stream out of several upstream ones (a continued stream).

The first upstream stream is relayed untouched. After a continuation, each chunk of
the new stream is rewritten so the client sees one answer: the first stream's ``id``,
no second role chunk, the whitespace a prefill had to drop not repeated, and one usage
block (when the client asked for usage) that sums every upstream attempt of the stream.
Only continued streams pay for the parsing.
"""

from __future__ import annotations

from typing import Any

import orjson

from accounting.usage import Usage
from gateway import sse
from gateway.providers.base import StreamState


class Splice:
    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.response_id: str | None = None
        self.text = ""  # what the client has of the answer's text so far
        self.usage = Usage()  # charged to the upstream attempts that ended
        self.continued = 0
        self._skip_ws = ""  # whitespace the client has but the prefill could not carry

    @property
    def produced_tokens(self) -> int:
        return (self.usage.output_tokens or 0) + (self.usage.partial_output_tokens or 0)

    def segment_ended(self, state: StreamState, charged: Usage) -> None:
        """An upstream stream of this answer ended: keep what the client got of it."""
        if self.response_id is None:
            self.response_id = state.response_id
        self.text += state.visible_text()
        self.usage = self.usage.add(charged)

    def continuing(self, prefill: str) -> None:
        """The next stream continues from ``prefill`` (``self.text``, perhaps without
        its trailing whitespace)."""
        self.continued += 1
        self._skip_ws = self.text[len(prefill) :]

    def out(self, frames: bytes) -> bytes:
        """What to send the client of ``frames`` (complete SSE events)."""
        if not self.continued:
            return frames
        events = sse.Decoder().feed(frames)
        parts = [frame for event in events if (frame := self._rewrite(event.data))]
        return b"".join(parts)

    def _rewrite(self, data: bytes) -> bytes | None:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(chunk, dict):
            return None
        if self.response_id is not None:
            chunk["id"] = self.response_id
        usage = chunk.get("usage")
        if not chunk.get("choices"):
            if not isinstance(usage, dict) or not self.include_usage:
                return None
            chunk["usage"] = self._summed(usage)
            return sse.frame(orjson.dumps(chunk))
        kept = [c for c in chunk["choices"] if self._keep(c)]
        if not kept:
            return None
        chunk["choices"] = kept
        return sse.frame(orjson.dumps(chunk))

    def _keep(self, choice: Any) -> bool:
        if not isinstance(choice, dict):
            return False
        delta = choice.get("delta")
        if isinstance(delta, dict):
            delta.pop("role", None)  # the client has its role chunk already
            content = delta.get("content")
            if isinstance(content, str) and content and self._skip_ws:
                if content.startswith(self._skip_ws):
                    delta["content"] = content[len(self._skip_ws) :]
                self._skip_ws = ""
            if delta.get("content") == "":
                del delta["content"]
        return bool(delta) or choice.get("finish_reason") is not None

    def _summed(self, block: dict[str, Any]) -> dict[str, Any]:
        prompt = _int(block.get("prompt_tokens")) + (self.usage.input_tokens or 0)
        completion = _int(block.get("completion_tokens")) + self.produced_tokens
        return {
            **block,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
