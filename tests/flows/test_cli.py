"""The ``spendgate`` command as a user runs it: demo, serve with a file, graceful stop."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import openai
import yaml

from tests.support.gateway import ENV, KEY_RESEARCH, PROVIDER_KEY
from tests.support.ledger import CUT_ALLOWANCE_USD
from tests.support.process import spendgate

MESSAGES = [{"role": "user", "content": "hello"}]


def test_demo_answers_a_chat_completion(tmp_path: Path) -> None:
    with spendgate(["serve", "--demo"], {"SPENDGATE_STORE": ""}) as (_, url):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="anything", max_retries=0)
        completion = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert completion.choices[0].message.content
        chunks = list(
            client.chat.completions.create(model="claude-sonnet", messages=MESSAGES, stream=True)
        )
        assert chunks[-1].choices[0].finish_reason == "stop"


def test_graceful_stop_lets_open_streams_finish(
    config: dict[str, Any], mock: str, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tmp_path / "gateway.log"
    with spendgate(["serve", "--config", str(path)], ENV, log) as (proc, url):
        import httpx

        httpx.post(
            f"{mock}/_mock/script", json={"model": "gpt-4o-mini", "steps": [{"chunk_delay_s": 0.1}]}
        ).raise_for_status()
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY_RESEARCH, max_retries=0)
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        chunks = [next(iter(stream))]
        threading.Timer(0.05, proc.send_signal, [signal.SIGTERM]).start()
        chunks += list(stream)
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM
    text = log.read_text()
    assert '"msg":"request"' in text and PROVIDER_KEY not in text and KEY_RESEARCH not in text


def test_stream_cut_by_shutdown_is_settled_before_exit(
    config: dict[str, Any], mock: str, tmp_path: Path
) -> None:
    from decimal import Decimal

    import httpx

    from tests.flows.test_budgets import TOKEN_USD, priced
    from tests.support.gateway import run_gateway

    config = priced(config)
    config["defaults"]["shutdown_grace_s"] = 1
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    httpx.post(
        f"{mock}/_mock/script",
        json={"model": "gpt-4o-mini", "steps": [{"chunk_delay_s": 0.1, "completion_tokens": 300}]},
    ).raise_for_status()
    headers = {"authorization": f"Bearer {KEY_RESEARCH}", "x-workflow-id": "wf-shutdown"}
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    with spendgate(["serve", "--config", str(path)], ENV) as (proc, url):
        with httpx.stream(
            "POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30
        ) as r:
            lines = r.iter_lines()
            next(lines)
            proc.send_signal(signal.SIGTERM)
            try:
                for _ in lines:
                    pass
            except httpx.HTTPError:
                pass  # the connection is dropped when the grace period ends
        proc.wait(timeout=20)
    [record] = httpx.get(f"{mock}/_mock/stats").json()["requests"]
    assert record["outcome"] == "cancelled" and record["completion_tokens"] < 300
    with run_gateway(config, mock) as gw:
        state = httpx.get(f"{gw.url}/workflows/wf-shutdown", headers=headers).json()
    truth = (record["prompt_tokens"] + record["completion_tokens"]) * TOKEN_USD
    assert state["partial_streams"] == 1 and state["reserved_usd"] == "0.000000"
    # cut by the gateway while generating: what arrived, plus the cut allowance
    assert truth <= Decimal(state["spent_usd"]) <= truth + CUT_ALLOWANCE_USD


def test_workers_share_one_metrics_view(config: dict[str, Any], mock: str, tmp_path: Path) -> None:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with spendgate(["serve", "--config", str(path), "--workers", "2"], ENV) as (_, url):
        headers = {"authorization": f"Bearer {KEY_RESEARCH}"}
        body = {"model": "gpt-4o-mini", "messages": MESSAGES}
        for _ in range(20):  # new connections: spread over both workers
            with httpx.Client() as client:
                assert (
                    client.post(
                        f"{url}/v1/chat/completions", json=body, headers=headers
                    ).status_code
                    == 200
                )
        request_ids = {
            rec["headers"].get("x-request-id")
            for rec in httpx.get(f"{mock}/_mock/stats").json()["requests"]
        }
        assert len(request_ids) == 20
        text = httpx.get(f"{url}/metrics").text
    total = sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "spendgate_requests_total" and s.labels.get("model") == "gpt-4o-mini"
    )
    assert total == 20


def test_log_level_and_console_traces_are_honoured(
    config: dict[str, Any], mock: str, tmp_path: Path
) -> None:
    """--log-level reaches the worker's logging (it used to be reset to info), and
    OTEL_TRACES_EXPORTER=console writes spans (it used to be ignored)."""
    import httpx

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    log, out = tmp_path / "gateway.log", tmp_path / "gateway.out"
    env = {**ENV, "OTEL_TRACES_EXPORTER": "console"}
    args = ["serve", "--config", str(path), "--log-level", "warning"]
    with spendgate(args, env, log, out) as (_, url):
        body = {"model": "gpt-4o-mini", "messages": MESSAGES}
        headers = {"authorization": f"Bearer {KEY_RESEARCH}"}
        assert httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers).is_success
    text = log.read_text()
    assert '"msg":"request"' not in text and '"level":"info"' not in text
    assert '"name": "chat gpt-4o-mini"' in out.read_text()  # the console exporter's span


def test_an_unknown_trace_exporter_is_refused_at_start(
    config: dict[str, Any], tmp_path: Path
) -> None:
    import subprocess
    import sys

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(path)],
        env={**__import__("os").environ, **ENV, "OTEL_TRACES_EXPORTER": "zipkin"},
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 2 and b"OTEL_TRACES_EXPORTER" in done.stderr
