"""Trust at the edges: hostile input is a 4xx (never a 500 or a dropped connection),
the server's own limits hold, allow-lists apply to every candidate."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.idempotency import derived_key
from tests.support.gateway import KEY_OTHER, KEY_RESEARCH, Gateway, run_gateway

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
AUTH = {"authorization": f"Bearer {KEY_RESEARCH}"}
DEEP = "[" * 1000 + "]" * 1000


def post(gw: Gateway, body: Any = None, content: bytes | None = None, **headers: Any) -> int:
    r = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json=None if content is not None else (body or CHAT),
        content=content,
        headers={**AUTH, "content-type": "application/json", **headers},
        timeout=30,
    )
    return r.status_code


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"x-stainless-retry-count": "²".encode()}, None),  # a digit to str.isdigit only
        ({"x-workflow-id": "w", "x-workflow-budget-tokens": str(2**63)}, None),
        ({"x-workflow-id": "w", "x-workflow-budget-tokens": "9" * 5000}, None),
        ({"x-workflow-id": "w", "x-workflow-budget-usd": "9223372036855"}, None),
        ({"x-request-timeout": "9" * 5000}, None),
        ({"x-workflow-id": "w"}, {**CHAT, "max_tokens": 18446744073709551615}),
        ({"x-workflow-id": "w"}, {**CHAT, "n": 10**30}),
        ({}, {**CHAT, "stream": True, "stream_options": "yes"}),
        ({}, {**CHAT, "max_tokens": 1e300}),
        ({}, {**CHAT, "messages": [1, None]}),
        ({"idempotency-key": "é".encode("latin-1")}, None),
    ],
)
def test_hostile_numbers_and_shapes_are_400(
    gateway: Gateway, headers: dict[str, Any], body: Any
) -> None:
    status = post(gateway, body, **headers)
    assert status == 400 or (status == 200 and "x-stainless-retry-count" in headers)
    assert post(gateway) == 200  # and the store is not wedged by it


@pytest.mark.parametrize("where", ["messages", "tools"])
def test_json_nested_beyond_the_limit_is_400(gateway: Gateway, where: str) -> None:
    inner = (
        f'[{{"role":"user","content":{DEEP}}}]'
        if where == "messages"
        else '[{"role":"user","content":"hi"}]'
    )
    tools = f',"tools":{DEEP}' if where == "tools" else ""
    content = f'{{"model":"gpt-4o-mini","messages":{inner}{tools}}}'.encode()
    headers = {"x-workflow-id": "deep", "x-workflow-budget-usd": "0.001"}
    assert post(gateway, content=content, **headers) == 400
    assert post(gateway) == 200


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = [
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "n",
    "tools",
    "max_completion_tokens",
]
HEADER_NAMES = [
    "x-workflow-id",
    "x-workflow-budget-usd",
    "x-workflow-budget-tokens",
    "x-workflow-step",
    "x-request-timeout",
    "x-stainless-timeout",
    "x-stainless-retry-count",
    "idempotency-key",
    "traceparent",
]
HEADER_VALUES = st.binary(min_size=1, max_size=300).filter(
    lambda v: not set(v) & {0, 10, 13} and v.strip() == v
) | st.integers(min_value=-(2**70), max_value=2**70).map(lambda n: str(n).encode())


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(
    fields=st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=5),
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), HEADER_VALUES, max_size=4),
    base=st.booleans(),
)
def test_no_input_is_a_server_error(
    gateway: Gateway, fields: dict[str, Any], headers: dict[str, bytes], base: bool
) -> None:
    """Any body and any of the headers the gateway reads: a 4xx or a 200, never a 5xx
    or a dropped connection; and a normal request still works afterwards."""
    body = {**CHAT, **fields} if base else fields
    with httpx.Client(base_url=gateway.url, timeout=30) as c:
        r = c.post("/v1/chat/completions", json=body, headers={**AUTH, **headers})
        assert r.status_code < 500, (r.status_code, r.text[:300])
        if r.status_code >= 400:
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        assert c.post("/v1/chat/completions", json=CHAT, headers=AUTH).status_code == 200


def test_fallbacks_respect_the_key_allow_list(config: dict[str, Any], mock: str) -> None:
    """A key allowed only gpt-4o-mini is never served by another model when it fails."""
    config["models"]["gpt-4o-mini"]["fallbacks"] = ["gpt-4o"]
    config["models"]["gpt-4o-mini"]["context_window_fallbacks"] = ["claude-sonnet"]
    with run_gateway(config, mock) as gw:
        gw.script("gpt-4o-mini", [{"status": 500}] * 3 + [{"status": 400, "context_window": True}])
        headers = {"authorization": f"Bearer {KEY_OTHER}"}
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=headers, timeout=30)
        assert (
            r.status_code == 502 and "gpt-4o skipped: not allowed" in r.json()["error"]["message"]
        )
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=headers, timeout=30)
        assert r.status_code == 400  # the context-window error itself, not Claude's answer
        assert {rec["model"] for rec in gw.mock_stats()["requests"]} == {"gpt-4o-mini"}


def test_slow_headers_are_cut_and_the_connection_cap_holds(
    config: dict[str, Any], mock: str
) -> None:
    config["server"] = {"header_timeout_s": 0.3, "max_connections": 4}
    with run_gateway(config, mock) as gw:
        host, port = gw.url.removeprefix("http://").split(":")
        silent = socket.create_connection((host, int(port)))
        silent.settimeout(5)
        started = time.monotonic()
        assert silent.recv(1024).startswith(b"HTTP/1.1 408")  # nothing sent: cut by the deadline
        assert silent.recv(1024) == b"" and time.monotonic() - started < 3
        silent.close()
        idle = [socket.create_connection((host, int(port))) for _ in range(4)]
        extra = socket.create_connection((host, int(port)))
        extra.settimeout(5)
        assert extra.recv(1024).startswith(b"HTTP/1.1 503")
        for sock in [*idle, extra]:
            sock.close()
        time.sleep(0.05)  # let the server see the closes (a real socket is observed)
        assert post(gw) == 200


def test_derived_idempotency_keys_are_unambiguous() -> None:
    assert derived_key("proj:alpha", "deploy") != derived_key("proj", "alpha:deploy")


def test_metrics_and_readiness_details_need_the_metrics_key(
    config: dict[str, Any], mock: str
) -> None:
    from tests.support.gateway import ENV

    ENV["SG_METRICS"] = "sg-metrics-SENTINEL-77"
    config["auth"]["metrics_key_env"] = "SG_METRICS"
    try:
        with run_gateway(config, mock) as gw:
            assert httpx.get(f"{gw.url}/metrics").status_code == 401
            key = {"authorization": "Bearer sg-metrics-SENTINEL-77"}
            assert "spendgate_requests_total" in httpx.get(f"{gw.url}/metrics", headers=key).text
            assert httpx.get(f"{gw.url}/readyz").json() == {"status": "ready"}
            assert "models" in httpx.get(f"{gw.url}/readyz", headers=key).json()
    finally:
        del ENV["SG_METRICS"]


def test_an_unready_store_shows_no_address(config: dict[str, Any], mock: str) -> None:
    from tests.support.redis_server import free_port

    config["store"] = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with run_gateway(config, mock) as gw:
        r = httpx.get(f"{gw.url}/readyz")
        assert r.status_code == 503 and "127.0.0.1" not in r.text


def _early_hints_upstream() -> tuple[socketserver.ThreadingTCPServer, str]:
    """An OpenAI-shaped upstream that sends a 103 in its own write before each answer,
    keeping the connection alive; each answer names its request's number."""
    count = {"n": 0}

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    byte = self.rfile.read(1)
                    if not byte:
                        return
                    head += byte
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                self.rfile.read(length)
                count["n"] += 1
                self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nlink: </x>; rel=preload\r\n\r\n")
                self.wfile.flush()
                time.sleep(0.05)  # a separate write, as a proxy in front would send it
                body = json.dumps(_completion(f"answer-{count['n']}")).encode()
                self.wfile.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                self.wfile.flush()

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
    }  # fmt: skip


def test_an_early_hint_never_hands_one_key_another_keys_answer(
    config: dict[str, Any], mock: str
) -> None:
    upstream, url = _early_hints_upstream()
    try:
        config["providers"]["mock-openai"]["base_url"] = url
        config["auth"]["keys"][1]["models"] = None
        with run_gateway(config, mock) as gw:
            answers = []
            for key in (KEY_RESEARCH, KEY_OTHER, KEY_RESEARCH):
                r = httpx.post(
                    f"{gw.url}/v1/chat/completions",
                    json=CHAT,
                    headers={"authorization": f"Bearer {key}"},
                    timeout=30,
                )
                assert r.status_code == 200
                answers.append(r.json()["choices"][0]["message"]["content"])
        assert answers == ["answer-1", "answer-2", "answer-3"]
    finally:
        upstream.shutdown()
        upstream.server_close()
