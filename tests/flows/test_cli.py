"""The ``spendgate`` command as a user runs it: demo, serve with a file, graceful stop."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import openai
import yaml

from tests.support.gateway import ENV, KEY_RESEARCH, PROVIDER_KEY
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
