"""One scenario matrix over every (client API, provider API) pair, against the mock: the
errors it classifies and the stream anomalies it survives, in each client's shape, and
the money each costs (flat-priced: the ledger against what the mock generated)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from gateway import sse
from tests.support.gateway import KEY_RESEARCH, Gateway, base_config, run_gateway
from tests.support.ledger import TOKEN_USD, flat_priced, records, settled, spent, truth_usd

PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}
UPSTREAM = {"gpt-4o-mini": "gpt-4o-mini", "claude-sonnet": "claude-sonnet-4-5"}
TERMINAL = {"chat": "[DONE]", "responses": "response.completed", "messages": "message_stop"}
PAIRS = [
    ("chat", "gpt-4o-mini"),
    ("chat", "claude-sonnet"),
    ("responses", "gpt-4o-mini"),
    ("responses", "claude-sonnet"),
    ("messages", "claude-sonnet"),
    ("messages", "gpt-4o-mini"),
]
ALLOWANCE_USD = 16 * TOKEN_USD  # budgets.cut_stream_allowance_tokens, the default
EVERY_PAIR = pytest.mark.parametrize(("api", "model"), PAIRS, ids=[f"{a}-{m}" for a, m in PAIRS])


@pytest.fixture(scope="module")
def shared(mock_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One gateway for the matrix (breakers that never open, so scenarios stay apart)."""
    store = f"sqlite:///{tmp_path_factory.mktemp('pairs') / 'state.db'}"
    config = flat_priced(base_config(mock_url, store))
    config["defaults"]["breaker"] = {"fail_max": 10_000, "reset_timeout_s": 1}
    with run_gateway(config, mock_url) as gateway:
        yield gateway


@pytest.fixture
def gw(shared: Gateway, mock: str) -> Gateway:
    return shared  # ``mock`` resets the mock's scripts and stats for each scenario


@pytest.fixture
def own_gw(config: dict[str, Any], mock: str) -> Any:
    """A gateway of the scenario's own (a 429 leaves the provider paced)."""
    with run_gateway(flat_priced(config), mock) as gateway:
        yield gateway


def body_for(api: str, model: str, stream: bool) -> dict[str, Any]:
    if api == "responses":
        return {"model": model, "input": "Say hello", "stream": stream}
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": stream,
    }
    return {**body, "max_tokens": 100} if api == "messages" else body


def send(
    gw: Gateway, api: str, model: str, *, stream: bool = False, **headers: str
) -> httpx.Response:
    headers = {"authorization": f"Bearer {KEY_RESEARCH}", **headers}
    return httpx.post(
        gw.url + PATHS[api], json=body_for(api, model, stream), headers=headers, timeout=30
    )


def events(r: httpx.Response) -> list[tuple[str | None, Any]]:
    out: list[tuple[str | None, Any]] = []
    for event in sse.Decoder().feed(r.content):
        data = event.data.decode()
        out.append((event.event, data if data == "[DONE]" else orjson.loads(data)))
    return out


def is_error_event(api: str, event: tuple[str | None, Any]) -> bool:
    name, data = event
    if api == "chat":
        return isinstance(data, dict) and "error" in data
    return name == "error"


def terminal_of(api: str, event: tuple[str | None, Any]) -> bool:
    name, data = event
    return (data if api == "chat" else name) == TERMINAL[api]


def assert_error_shape(api: str, body: dict[str, Any], code: str | None = None) -> None:
    if api == "messages":
        assert body["type"] == "error" and isinstance(body["error"]["type"], str)
        assert code is None or body["error"].get("code") == code
    else:
        assert isinstance(body["error"]["message"], str)
        assert code is None or body["error"]["code"] == code


@EVERY_PAIR
def test_429_with_retry_after_is_retried(own_gw: Gateway, api: str, model: str) -> None:
    own_gw.script(UPSTREAM[model], [{"status": 429, "headers": {"retry-after": "0"}}])
    r = send(own_gw, api, model)
    assert r.status_code == 200 and r.headers["x-spendgate-attempts"] == "2"


@EVERY_PAIR
def test_5xx_exhausting_retries_is_a_502_in_the_clients_shape(
    gw: Gateway, api: str, model: str
) -> None:
    gw.script(UPSTREAM[model], [], default={"status": 500})
    r = send(gw, api, model)
    assert r.status_code == 502
    assert_error_shape(api, r.json(), "upstream_error")


@EVERY_PAIR
def test_context_too_long_is_passed_through_in_the_clients_shape(
    gw: Gateway, api: str, model: str
) -> None:
    gw.script(UPSTREAM[model], [{"status": 400, "context_window": True}])
    r = send(gw, api, model)
    assert r.status_code == 400
    assert_error_shape(api, r.json())
    assert len(records(gw.mock_url)) == 1  # a client error: not retried


@EVERY_PAIR
def test_a_clean_stream_ends_with_its_apis_terminal(gw: Gateway, api: str, model: str) -> None:
    r = send(gw, api, model, stream=True)
    found = events(r)
    assert r.status_code == 200 and terminal_of(api, found[-1])
    assert b": spendgate {" in r.content  # the cost comment before the terminal


@EVERY_PAIR
def test_garbage_mid_stream_is_dropped(gw: Gateway, api: str, model: str) -> None:
    gw.script(UPSTREAM[model], [{"malformed_at_chunk": 2}])
    found = events(send(gw, api, model, stream=True))
    assert terminal_of(api, found[-1])


@EVERY_PAIR
def test_a_missing_terminator(gw: Gateway, api: str, model: str) -> None:
    gw.script(UPSTREAM[model], [{"no_done": True}])
    found = events(send(gw, api, model, stream=True))
    if (api, model) == ("responses", "gpt-4o-mini"):
        # Without response.completed the answer's end (and its usage) never came.
        assert is_error_event(api, found[-1])
    else:
        assert terminal_of(api, found[-1])


@EVERY_PAIR
def test_a_reset_stream_ends_with_an_error_event_and_is_charged_exactly(
    gw: Gateway, api: str, model: str
) -> None:
    gw.script(UPSTREAM[model], [{"reset_after_chunks": 4}])
    r = send(gw, api, model, stream=True, **{"x-workflow-id": f"wf-{api}-{model}"})
    found = events(r)
    assert is_error_event(api, found[-1])
    state = settled(gw.url, f"wf-{api}-{model}", 1)
    assert spent(state) == truth_usd(gw.mock_url) > 0


@EVERY_PAIR
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_idempotent_replay(gw: Gateway, api: str, model: str, stream: bool) -> None:
    first = send(gw, api, model, stream=stream, **{"idempotency-key": f"k-{api}-{model}-{stream}"})
    again = send(gw, api, model, stream=stream, **{"idempotency-key": f"k-{api}-{model}-{stream}"})
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert len(records(gw.mock_url)) == 1
    if not stream:
        assert first.content == again.content


CONTENT = {
    "chat": '"content":"',
    "responses": "event: response.output_text.delta",
    "messages": "event: content_block_delta",
}


@EVERY_PAIR
def test_a_stream_the_client_leaves_is_charged_within_the_allowance(
    gw: Gateway, api: str, model: str
) -> None:
    gw.script(UPSTREAM[model], [{"chunk_delay_s": 0.05, "completion_tokens": 200}])
    headers = {"authorization": f"Bearer {KEY_RESEARCH}", "x-workflow-id": f"wf-left-{api}-{model}"}
    body = body_for(api, model, True)
    with httpx.stream("POST", gw.url + PATHS[api], json=body, headers=headers) as r:
        seen = 0
        for line in r.iter_lines():
            seen += CONTENT[api] in line and '"content":""' not in line
            if seen >= 8:
                break
    state = settled(gw.url, f"wf-left-{api}-{model}", 1)
    [record] = records(gw.mock_url)
    assert record["outcome"] == "cancelled" and 8 <= record["completion_tokens"] < 200
    truth = truth_usd(gw.mock_url)
    assert truth <= spent(state) <= truth + ALLOWANCE_USD
