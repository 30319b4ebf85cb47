from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from accounting.tokens import estimate_chat_prompt, prompt_upper_bound

text = st.text(max_size=200)
part = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, text),
    st.just({"type": "image_url", "image_url": {"url": "http://x/a.png"}}),
)
message = st.builds(
    lambda role, content: {"role": role, "content": content},
    st.sampled_from(["system", "user", "assistant"]),
    st.one_of(text, st.lists(part, max_size=4)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(message, min_size=1, max_size=6), st.sampled_from(["gpt-4o", "gpt-4"]))
def test_the_bound_is_never_below_the_tokenizer_count(messages: list[Any], model: str) -> None:
    body = {"model": model, "messages": messages}
    raw = orjson.dumps(body)
    assert prompt_upper_bound(body, len(raw)) >= estimate_chat_prompt(body, model)
