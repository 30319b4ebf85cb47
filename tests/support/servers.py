"""Real HTTP servers for tests: any ASGI app under uvicorn on a free local port."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

STARTUP_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 10.0


def _free_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(2048)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, told to stop at once rather than at its next 0.1 s tick (a
    test suite starts hundreds of servers)."""

    _wake: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self._wake.wait()

    def stop(self) -> None:
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: it stopped already
                loop.call_soon_threadsafe(wake.set)


class _ServerThread(threading.Thread):
    """Runs ``server`` and keeps any failure for the main thread to see."""

    def __init__(self, server: _Server, sock: socket.socket) -> None:
        super().__init__(name="test-uvicorn", daemon=True)
        self.server = server
        self.sock = sock
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:
            self.error = exc  # the main thread raises it too, with context
            raise


def _wait_started(thread: _ServerThread) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not thread.server.started:
        if thread.error is not None:
            raise RuntimeError("test server failed to start") from thread.error
        if not thread.is_alive():
            raise RuntimeError("test server exited during startup")
        if time.monotonic() > deadline:
            raise TimeoutError("test server did not start in time")
        time.sleep(0.002)


@contextmanager
def serve_app(app: Any, *, host: str = "127.0.0.1", **config: Any) -> Iterator[str]:
    """Serve ``app`` on a free port in a background thread; yield its base URL.

    Extra keyword arguments go to ``uvicorn.Config`` (e.g. ``lifespan="off"``).
    """
    sock = _free_socket(host)
    port = sock.getsockname()[1]
    options: dict[str, Any] = {
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "log_level": "warning",
        "access_log": False,
        "timeout_graceful_shutdown": 1,
        "timeout_keep_alive": 30,
    }
    options.update(config)
    server = _Server(uvicorn.Config(app, host=host, port=port, **options))
    thread = _ServerThread(server, sock)
    thread.start()
    try:
        _wait_started(thread)
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        thread.join(SHUTDOWN_TIMEOUT_S)
        sock.close()
        if thread.error is not None:
            raise RuntimeError("test server failed") from thread.error
