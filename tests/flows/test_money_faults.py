"""Money truth on the worst days: a replica killed or stopped mid-stream, Redis paused
or restarted empty under two replicas, a full disk. The mock's ledger is the truth."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.support.clock import FakeClock
from tests.support.gateway import ADMIN_KEY, ENV, KEY_RESEARCH, Gateway, run_gateway
from tests.support.ledger import (
    CUT_ALLOWANCE_USD,
    TOKEN_USD,
    flat_priced,
    records,
    settled,
    spent,
    status,
    truth_usd,
)
from tests.support.process import spendgate
from tests.support.redis_server import RedisServer

MESSAGES = [{"role": "user", "content": "hi"}]
AUTH = {"authorization": f"Bearer {KEY_RESEARCH}"}


def chat(url: str, workflow: str, cap: str = "1", **headers: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20},
        headers={**AUTH, "x-workflow-id": workflow, "x-workflow-budget-usd": cap, **headers},
        timeout=30,
    )


def written(config: dict[str, Any], tmp_path: Path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_a_replica_killed_mid_stream_is_charged_after_its_restart(
    config: dict[str, Any], mock: str, tmp_path: Path
) -> None:
    config = flat_priced(config)
    config["defaults"]["lease_margin_s"] = 1
    httpx.post(
        f"{mock}/_mock/script",
        json={"model": "gpt-4o-mini", "steps": [{"chunk_delay_s": 0.1, "completion_tokens": 100}]},
    )
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    headers = {**AUTH, "x-workflow-id": "wf-kill", "x-request-timeout": "3"}
    with spendgate(["serve", "--config", written(config, tmp_path)], ENV) as (proc, url):
        _kill_after(proc, url, body, headers, 3)
    wait_for(lambda: records(mock)[0]["outcome"] != "pending")
    # Restarted later than the hold's lease (deadline 3 s + margin 1 s): no new request.
    with run_gateway(config, mock, wall=FakeClock(time.time() + 5)) as gw:
        state = status(gw.url, "wf-kill")
    assert state["reserved_usd"] == "0.000000" and state["expired_holds"] == 1
    assert spent(state) == Decimal(state["expired_holds_usd"]) >= truth_usd(mock)


def _kill_after(
    proc: subprocess.Popen[bytes], url: str, body: Any, headers: Any, events: int
) -> None:
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as r:
        for seen, _ in enumerate(line for line in r.iter_lines() if '"content":"' in line):
            if seen == events:
                proc.kill()
                proc.wait()
                return


def test_sigterm_ends_a_stream_with_an_error_event_and_settles_it(
    config: dict[str, Any], mock: str, tmp_path: Path
) -> None:
    config = flat_priced(config)
    config["defaults"]["shutdown_grace_s"] = 1
    httpx.post(
        f"{mock}/_mock/script",
        json={"model": "gpt-4o-mini", "steps": [{"chunk_delay_s": 0.2, "completion_tokens": 100}]},
    )
    with spendgate(["serve", "--config", written(config, tmp_path)], ENV) as (proc, url):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY_RESEARCH, max_retries=0)
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-workflow-id": "wf-term"},
        )
        with pytest.raises(openai.APIError, match="shut down"):
            for n, _ in enumerate(stream):
                if n == 3:
                    proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)  # uvicorn re-raises it
    with run_gateway(config, mock) as gw:
        state = status(gw.url, "wf-term")
    truth = truth_usd(mock)
    assert state["reserved_usd"] == "0.000000" and state["partial_streams"] == 1
    assert truth <= spent(state) <= truth + CUT_ALLOWANCE_USD  # cut by us: the allowance


def test_sigterm_settles_a_plain_answer_still_running_at_the_end_of_the_grace(
    config: dict[str, Any], mock: str, tmp_path: Path
) -> None:
    config = flat_priced(config)
    config["defaults"]["shutdown_grace_s"] = 0.5
    httpx.post(f"{mock}/_mock/script", json={"model": "gpt-4o-mini", "steps": [{"delay_s": 2}]})
    log = tmp_path / "gateway.log"
    with spendgate(["serve", "--config", written(config, tmp_path)], ENV, log) as (proc, url):
        caller = threading.Thread(target=lambda: _swallow(lambda: chat(url, "wf-grace")))
        caller.start()
        wait_for(lambda: len(records(mock)) == 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)  # uvicorn re-raises it
        caller.join()
    with run_gateway(config, mock) as gw:
        state = status(gw.url, "wf-grace")
    assert state["reserved_usd"] == "0.000000" and state["calls"] == 1
    assert spent(state) == truth_usd(mock) == 27 * TOKEN_USD  # read to its end, then settled
    assert "abandoned_attempt_settled" in log.read_text()


def _swallow(call: Any) -> None:
    with contextlib.suppress(httpx.HTTPError):
        call()


def test_a_paused_redis_loses_no_paid_answer_and_leaves_no_orphan_hold(
    config: dict[str, Any], mock: str, own_redis_server: RedisServer
) -> None:
    config = flat_priced(config)
    config["store"] = own_redis_server.url
    with run_gateway(config, mock) as a, run_gateway(config, mock) as b:
        a.script("gpt-4o-mini", [{"delay_s": 1.0}])
        answer: list[httpx.Response] = []
        caller = threading.Thread(target=lambda: answer.append(chat(a.url, "wf-pause")))
        caller.start()
        wait_for(lambda: len(records(mock)) == 1)  # reserved, and the provider is working
        own_redis_server.pause()
        try:
            refused = chat(b.url, "wf-pause")  # cannot reserve: fails closed, sends nothing
            caller.join()
        finally:
            own_redis_server.resume()
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "store_unavailable"
        # The answer was paid for: it is answered although its settle could not land.
        assert answer[0].status_code == 200
        state = settled(a.url, "wf-pause", 1)
        assert len(records(mock)) == 1
        assert spent(state) == truth_usd(mock) == 27 * TOKEN_USD
        # The refused reservation ran when Redis woke up, fenced: it held nothing.
        assert status(b.url, "wf-pause")["reserved_usd"] == "0.000000"


@pytest.fixture
def two_on_redis(
    config: dict[str, Any], mock: str, own_redis_server: RedisServer
) -> Iterator[tuple[Gateway, Gateway, dict[str, Any]]]:
    config = flat_priced(config)
    config["store"] = own_redis_server.url
    config["defaults"]["store_check_interval_s"] = 0.1
    config["auth"]["keys"][0]["max_workflow_budget_usd"] = 50
    with run_gateway(config, mock) as a, run_gateway(config, mock) as b:
        yield a, b, config


def test_a_redis_restarted_empty_fails_closed_until_an_operator_accepts(
    two_on_redis: tuple[Gateway, Gateway, dict[str, Any]],
    mock: str,
    own_redis_server: RedisServer,
) -> None:
    a, b, config = two_on_redis
    assert chat(a.url, "wf-lost", "0.1").status_code == 200
    assert chat(b.url, "wf-lost", "0.1").status_code == 200
    a.script("gpt-4o-mini", [{"delay_s": 0.5}])
    in_flight: list[httpx.Response] = []
    caller = threading.Thread(target=lambda: in_flight.append(chat(a.url, "wf-lost", "0.1")))
    caller.start()
    wait_for(lambda: len(records(mock)) == 3)
    own_redis_server.restart()  # no persistence: it comes back empty
    caller.join()
    assert in_flight[0].status_code == 200  # paid for, answered; its settle waits
    for gw in (a, b):
        wait_for(lambda gw=gw: httpx.get(f"{gw.url}/readyz").status_code == 503)
        r = chat(gw.url, "wf-lost", "0.1")
        assert r.status_code == 503 and "lost its data" in r.json()["error"]["message"]
    with run_gateway(config, mock) as c:  # a replica started after the loss knows too
        assert httpx.get(f"{c.url}/readyz").status_code == 503
    accepted = httpx.post(
        f"{a.url}/admin/store/accept-reset", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert accepted.status_code == 200
    for gw in (a, b):
        wait_for(lambda gw=gw: httpx.get(f"{gw.url}/readyz").status_code == 200)
    # The in-flight call's settle found no hold: charged anyway (and logged).
    wait_for(lambda: a.runtime.budgets.pending_settles == 0)
    assert chat(b.url, "wf-lost", "0.1").status_code == 200
    state = status(a.url, "wf-lost")
    assert state["budget_usd"] == "0.100000"  # from the request, not the key's ceiling
    assert state["calls"] == 2 and spent(state) == 2 * 27 * TOKEN_USD


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)


def test_a_full_disk_makes_the_gateway_unready_and_is_counted(
    config: dict[str, Any], mock: str, tmp_path: Path
) -> None:
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "4m")
    try:
        config = flat_priced(config)
        config["store"] = f"sqlite:///{disk / 'state.db'}"
        with run_gateway(config, mock) as gw:
            assert httpx.get(f"{gw.url}/readyz").status_code == 200
            before = _store_errors(gw)
            with contextlib.suppress(OSError), open(disk / "filler", "wb") as filler:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            r = httpx.get(f"{gw.url}/readyz")
            assert r.status_code == 503
            assert chat(gw.url, "wf-full").status_code == 503
            assert _store_errors(gw) > before
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _store_errors(gw: Gateway) -> float:
    total = 0.0
    for line in httpx.get(f"{gw.url}/metrics").text.splitlines():
        if line.startswith("spendgate_store_errors_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total
