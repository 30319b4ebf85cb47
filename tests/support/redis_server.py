"""A throwaway ``redis-server`` for tests: its own port, no persistence, stoppable.

Tests must never touch a Redis they did not start, so the port is always a free one
picked here (never 6379).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType

REDIS_SERVER = os.environ.get("SPENDGATE_TEST_REDIS_SERVER", "/usr/bin/redis-server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    if port == 6379:  # pragma: no cover - the kernel never hands out a busy port
        return free_port()
    return port


class RedisServer:
    """``start``/``stop``/``restart`` (same port), ``pause``/``resume`` (SIGSTOP/SIGCONT)."""

    def __init__(self, port: int | None = None, binary: str = REDIS_SERVER) -> None:
        self.port = port if port is not None else free_port()
        if self.port == 6379:
            raise ValueError("refusing to run a test redis on 6379")
        self.binary = binary
        self._dir = tempfile.mkdtemp(prefix="spendgate-redis-")
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def url(self) -> str:
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", self._dir, "--logfile", "redis.log",
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._paused = False
        deadline = time.monotonic() + timeout
        while not self.answers_ping():
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited early: {self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING: {self._log_tail()}")
            time.sleep(0.01)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self._paused:
            proc.send_signal(signal.SIGCONT)
            self._paused = False
        terminate(proc)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        if self._proc is not None and not self._paused:
            self._proc.send_signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        if self._proc is not None and self._paused:
            self._proc.send_signal(signal.SIGCONT)
            self._paused = False

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _log_tail(self) -> str:
        try:
            with open(os.path.join(self._dir, "redis.log"), encoding="utf-8") as log:
                return log.read()[-2000:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def terminate(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 5 s (a process already gone: nothing)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def sigkill(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL, as a crash would (a process already gone: nothing)."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)
