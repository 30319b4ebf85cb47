"""What the client sees when the upstream stream misbehaves; the gateway stays healthy."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.support.gateway import KEY_RESEARCH, Gateway, run_gateway

MESSAGES = [{"role": "user", "content": "hi"}]


def stream_text(gw: Gateway, model: str = "gpt-4o-mini") -> tuple[str, str | None]:
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY_RESEARCH, max_retries=0)
    text, finish = "", None
    for chunk in client.chat.completions.create(model=model, messages=MESSAGES, stream=True):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    return text, finish


def healthy(gw: Gateway) -> None:
    text, finish = stream_text(gw)
    assert len(text.split()) == 20 and finish == "stop"


def test_malformed_event_is_dropped_not_forwarded(gateway: Gateway) -> None:
    gateway.script("gpt-4o-mini", [{"malformed_at_chunk": 4}])
    text, finish = stream_text(gateway)
    assert len(text.split()) == 20 and finish == "stop"
    healthy(gateway)


def test_missing_done_after_finish_still_finishes_cleanly(gateway: Gateway) -> None:
    gateway.script("gpt-4o-mini", [{"no_done": True}])
    text, finish = stream_text(gateway)
    assert len(text.split()) == 20 and finish == "stop"
    healthy(gateway)


@pytest.mark.parametrize("step", [{"close_after_chunks": 5}, {"reset_after_chunks": 5}])
def test_stream_ending_before_finish_is_an_error(gateway: Gateway, step: dict[str, Any]) -> None:
    gateway.script("gpt-4o-mini", [step])
    with pytest.raises(openai.APIError):
        stream_text(gateway)
    healthy(gateway)


def test_silent_upstream_hits_the_idle_timeout(config: dict[str, Any], mock: str) -> None:
    config["providers"]["mock-openai"]["idle_timeout_s"] = 0.5
    with run_gateway(config, mock) as gw:
        gw.script("gpt-4o-mini", [{"hang_after_chunks": 3}])
        with pytest.raises(openai.APIError, match="silent"):
            stream_text(gw)
        healthy(gw)


def test_deadline_mid_stream_ends_with_an_error_event(gateway: Gateway) -> None:
    gateway.script("gpt-4o-mini", [{"chunk_delay_s": 0.2}])
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY_RESEARCH, max_retries=0)
    with pytest.raises(openai.APIError, match="deadline"):
        for _ in client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-request-timeout": "1"},
        ):
            pass
    healthy(gateway)
