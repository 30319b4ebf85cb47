"""A throwaway Sentinel setup for tests: a primary ``redis-server``, one replica
(``--replicaof``) and one sentinel (``redis-server <conf> --sentinel``, quorum 1,
``down-after-milliseconds`` 1000) monitoring them as ``mymaster``, each on a free port
in a temporary directory. The primary can be killed (SIGKILL) and the sentinel's
failover waited for. Never the machine's own Redis.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from types import TracebackType

import redis

from tests.support.redis_server import REDIS_SERVER, free_port, sigkill, terminate

SERVICE = "mymaster"
DOWN_AFTER_MS = 1000


class SentinelNode:
    """One ``redis-server`` process (a data node or the sentinel) in its own directory."""

    def __init__(self, root: str, name: str) -> None:
        self.port = free_port()
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, *args], cwd=self.dir, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def data_args(self, *extra: str) -> tuple[str, ...]:
        return (
            "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", self.dir, "--logfile", "redis.log",
            "--repl-diskless-sync-delay", "0", *extra,
        )  # fmt: skip

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=2)

    def answers(self) -> bool:
        try:
            with self.client() as c:
                return bool(c.ping())
        except redis.RedisError:
            return False

    def role(self) -> str:
        with self.client() as c:
            first = c.execute_command("ROLE")[0]
        return first.decode() if isinstance(first, bytes) else str(first)

    def kill(self) -> None:
        sigkill(self.proc)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        terminate(proc)

    def log_tail(self, name: str) -> str:
        try:
            with open(os.path.join(self.dir, name), encoding="utf-8") as log:
                return log.read()[-800:]
        except OSError:
            return "(no log)"


def _promotable(replica: dict[str, object]) -> bool:
    """What the sentinel needs to pick a replica: up, in sync, its INFO fresh."""
    return (
        not replica["is_sdown"]
        and not replica["is_odown"]
        and replica.get("master-link-status") == "ok"
        and int(str(replica.get("info-refresh", 1 << 40))) < 5000
    )


class RedisSentinelServer:
    """``start``, ``url_for(db)`` (``redis+sentinel://...``), ``flush``, ``primary``,
    ``replica``, ``master_port``, ``wait_promoted``, ``close``."""

    def __init__(self) -> None:
        self._root = tempfile.mkdtemp(prefix="spendgate-sentinel-")
        self.nodes = [SentinelNode(self._root, "a"), SentinelNode(self._root, "b")]
        self.sentinel = SentinelNode(self._root, "sentinel")

    def url_for(self, db: int) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{SERVICE}/{db}"

    def start(self, timeout: float = 20.0) -> None:
        """The replica is in sync before the sentinel starts, so the sentinel's first
        INFO of the primary already lists it (no wait for its 10 s INFO period)."""
        deadline = time.monotonic() + timeout
        first, second = self.nodes
        first.start(*first.data_args())
        self._wait(deadline, "the primary did not answer PING", first.answers)
        second.start(*second.data_args("--replicaof", "127.0.0.1", str(first.port)))
        self._wait(deadline, "the replica did not sync", lambda: self._in_sync(second))
        conf = os.path.join(self.sentinel.dir, "sentinel.conf")  # sentinel rewrites it
        with open(conf, "w", encoding="utf-8") as out:
            out.write(
                f"port {self.sentinel.port}\nbind 127.0.0.1\ndir {self.sentinel.dir}\n"
                "logfile sentinel.log\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {first.port} 1\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
            )
        self.sentinel.start(conf, "--sentinel")
        self._wait(deadline, "the sentinel did not see the replica", self._replica_known)

    def _in_sync(self, replica: SentinelNode) -> bool:
        if not replica.answers():
            return False
        with replica.client() as c:
            return c.info("replication").get("master_link_status") == "up"

    def _replica_known(self) -> bool:
        """The sentinel names the primary and knows a healthy replica (one it can
        promote)."""
        try:
            with self.sentinel.client() as c:
                master = c.sentinel_get_master_addr_by_name(SERVICE)
                replicas = c.sentinel_slaves(SERVICE)
        except redis.RedisError:
            return False
        return bool(master) and any(_promotable(replica) for replica in replicas)

    def master_port(self) -> int:
        with self.sentinel.client() as c:
            _, port = c.sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def primary(self) -> SentinelNode:
        port = self.master_port()
        return next(node for node in self.nodes if node.port == port)

    def replica(self) -> SentinelNode:
        port = self.master_port()
        return next(node for node in self.nodes if node.port != port)

    def flush(self, db: int) -> None:
        with self.primary().client(db) as c:
            c.flushdb()

    def wait_promoted(self, node: SentinelNode, timeout: float = 10.0) -> None:
        """Until the sentinel names ``node`` the primary and it says it is one."""
        deadline = time.monotonic() + timeout
        self._wait(deadline, "the replica was not promoted", lambda: self._is_primary(node))

    def _is_primary(self, node: SentinelNode) -> bool:
        try:
            return self.master_port() == node.port and node.role() == "master"
        except redis.RedisError:
            return False

    def close(self) -> None:
        for node in (self.sentinel, *self.nodes):
            node.stop()
        shutil.rmtree(self._root, ignore_errors=True)

    def _wait(self, deadline: float, what: str, done: Callable[[], bool]) -> None:
        while not done():
            if time.monotonic() > deadline:
                logs = [f"{n.port}: {n.log_tail('redis.log')}" for n in self.nodes]
                logs.append(f"sentinel: {self.sentinel.log_tail('sentinel.log')}")
                self.close()
                raise RuntimeError(f"{what}:\n" + "\n".join(logs))
            time.sleep(0.02)

    def __enter__(self) -> RedisSentinelServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
