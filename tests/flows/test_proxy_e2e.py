"""The official OpenAI SDK against a real gateway in front of the mock provider."""

from __future__ import annotations

import openai
import pytest

from tests.support.gateway import KEY_RESEARCH, PROVIDER_KEY, Gateway

MESSAGES = [{"role": "user", "content": "Say hello"}]


def sdk(gw: Gateway, key: str = KEY_RESEARCH) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


def test_non_streaming_answer(gateway: Gateway) -> None:
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens == 20
    assert raw.headers["x-spendgate-model"] == "gpt-4o"
    assert raw.headers["x-spendgate-attempts"] == "1"
    assert raw.headers["x-request-id"]
    assert float(raw.headers["x-spendgate-cost-usd"]) > 0
    [record] = gateway.mock_stats()["requests"]
    assert record["model"] == "gpt-4o" and record["body"]["messages"] == MESSAGES


def test_streaming_answer_arrives_chunk_by_chunk(gateway: Gateway) -> None:
    stream = sdk(gateway).chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 20
    assert chunks[-1].choices[0].finish_reason == "stop"
    # The gateway asked the upstream for usage on the caller's behalf and stripped it.
    assert all(c.usage is None for c in chunks)
    [record] = gateway.mock_stats()["requests"]
    assert record["body"]["stream_options"] == {"include_usage": True}


def test_streaming_with_usage_requested(gateway: Gateway) -> None:
    chunks = list(
        sdk(gateway).chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 20


def test_unknown_fields_pass_through_and_model_is_mapped(gateway: Gateway) -> None:
    sdk(gateway).chat.completions.create(
        model="claude-sonnet" if False else "gpt-4o-mini",
        messages=MESSAGES,
        extra_body={"x_custom_field": {"a": 1}},
        temperature=0.3,
    )
    [record] = gateway.mock_stats()["requests"]
    assert record["body"]["x_custom_field"] == {"a": 1}
    assert record["body"]["temperature"] == 0.3


def test_provider_key_reaches_upstream_never_the_client(gateway: Gateway) -> None:
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    [record] = gateway.mock_stats()["requests"]
    assert record["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert KEY_RESEARCH not in str(record)
    assert PROVIDER_KEY not in raw.text and PROVIDER_KEY not in str(raw.headers)


def test_anthropic_model_answers_in_openai_shape(gateway: Gateway) -> None:
    client = sdk(gateway)
    completion = client.chat.completions.create(model="claude-sonnet", messages=MESSAGES)
    assert completion.choices[0].message.content
    chunks = list(
        client.chat.completions.create(model="claude-sonnet", messages=MESSAGES, stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 20


def test_models_lists_what_the_key_may_use(gateway: Gateway) -> None:
    names = {m.id for m in sdk(gateway).models.list()}
    assert names == {"gpt-4o", "gpt-4o-mini", "claude-sonnet", "embed"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health(gateway: Gateway, path: str) -> None:
    with gateway.client() as c:
        assert c.get(path).status_code == 200
