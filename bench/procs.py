"""The benchmark's child processes: start them pinned to a core, wait until they answer,
read their CPU time and RSS from /proc, and always stop them again."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Procs:
    """Every process the benchmark started, so that all of them can be stopped."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        core: int,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        stdout: IO[Any] | int | None = subprocess.DEVNULL,
        stderr: IO[Any] | int | None = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        """Run ``argv`` pinned to ``core``; ``taskset`` execs it, so the pid is the program's."""
        proc = subprocess.Popen(
            ["taskset", "-c", str(core), *argv],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children ourselves
        )
        self.children.append((name, proc))
        return proc

    def forget(self, proc: subprocess.Popen[bytes]) -> None:
        self.children = [(n, p) for n, p in self.children if p is not proc]

    def stop_all(self, grace_s: float = 5.0) -> None:
        """SIGTERM every live child (newest first), then SIGKILL what is left after ``grace_s``."""
        live = [(n, p) for n, p in reversed(self.children) if p.poll() is None]
        for _, proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for _, proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        self.children.clear()


@contextlib.contextmanager
def exits_cleanly(procs: Procs) -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into SystemExit and stop every child on any way out."""

    def on_signal(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    # Ctrl-C -> KeyboardInterrupt even if we were started with SIGINT ignored (a background job)
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        procs.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """One request to a loopback URL; returns (status, body), also for error statuses."""
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(
    url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0, log: Path | None = None
) -> float:
    """Poll ``url`` until it answers 200; fail fast if ``proc`` dies. Returns seconds waited."""
    start = time.monotonic()
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{url}: process exited with {proc.returncode}\n{tail}")
        try:
            status, _ = http("GET", url, timeout=1.0)
            if status == 200:
                return time.monotonic() - start
        except OSError:
            pass
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f}s")
        time.sleep(0.05)  # polling interval, not a readiness guess


def cpu_ms(pid: int) -> float:
    """utime + stime of the whole process (all threads), in milliseconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return ticks * 1000.0 / CLK_TCK


def core_busy_ms(core: int) -> float:
    """Busy time of one CPU (all processes, idle and iowait excluded), in milliseconds."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            ticks = [int(v) for v in line.split()[1:9]]
            return (sum(ticks) - ticks[3] - ticks[4]) * 1000.0 / CLK_TCK
    raise RuntimeError(f"no cpu{core} in /proc/stat")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def python() -> str:
    return sys.executable
