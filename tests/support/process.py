"""Run the real ``spendgate`` command in a child process and wait until it answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not become healthy")


@contextmanager
def spendgate(
    args: Sequence[str],
    env: dict[str, str] | None = None,
    log: Path | None = None,
    out: Path | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``log`` receives stderr (the JSON logs), ``out`` stdout."""
    port = free_port()
    full_env = {**os.environ, **(env or {})}
    stderr = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    stdout = open(out, "wb") if out else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", *args, "--port", str(port)],
        cwd=ROOT,
        env=full_env,
        stdout=stdout,
        stderr=stderr,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for opened in (stderr, stdout):
            if not isinstance(opened, int):
                opened.close()
