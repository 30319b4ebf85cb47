"""A throwaway Redis Cluster for tests: three masters and three replicas, each a
``redis-server --cluster-enabled yes`` on a free port in a temporary directory, joined
with ``redis-cli --cluster create``. Nodes can be killed (SIGKILL), and the
cluster's failover waited for. Never the machine's own Redis.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from types import TracebackType

import redis

from tests.support.redis_server import REDIS_SERVER, free_port, sigkill, terminate

REDIS_CLI = os.environ.get("SPENDGATE_TEST_REDIS_CLI", "/usr/bin/redis-cli")
NODE_TIMEOUT_MS = 2000


class ClusterNode:
    def __init__(self, root: str, extra: tuple[str, ...] = ()) -> None:
        self.extra = extra
        self.port = free_port()
        self.bus_port = free_port()  # explicit: the default (port + 10000) may be taken
        self.dir = os.path.join(root, str(self.port))
        os.makedirs(self.dir)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
            "--cluster-enabled", "yes", "--cluster-port", str(self.bus_port),
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", "",
            "--appendonly", "no", "--dir", self.dir, "--logfile", "redis.log", *self.extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def answers(self) -> bool:
        try:
            with self.client() as c:
                return bool(c.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        sigkill(self.proc)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        terminate(proc)


class RedisClusterServer:
    """``start``, ``url`` (``redis+cluster://...``), ``flush``, ``masters``,
    ``replica_of``, ``master_of_key``, ``wait_promoted``, ``close``."""

    def __init__(self, masters: int = 3, replicas: int = 1, extra: tuple[str, ...] = ()) -> None:
        """``extra``: more ``redis-server`` arguments for every node."""
        self._root = tempfile.mkdtemp(prefix="spendgate-cluster-")
        self.nodes = [ClusterNode(self._root, extra) for _ in range(masters * (1 + replicas))]
        self._replicas = replicas

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        deadline = time.monotonic() + timeout
        while not all(node.answers() for node in self.nodes):
            self._check_deadline(deadline, "the cluster nodes did not answer PING")
            time.sleep(0.02)
        create = [REDIS_CLI, "--cluster", "create"]
        create += [f"127.0.0.1:{n.port}" for n in self.nodes]
        create += ["--cluster-replicas", str(self._replicas), "--cluster-yes"]
        subprocess.run(create, check=True, capture_output=True, timeout=timeout)
        self.wait_healthy(deadline - time.monotonic())

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every live node says ``cluster_state:ok`` and sees every slot served."""
        deadline = time.monotonic() + timeout
        while not self._healthy():
            self._check_deadline(deadline, "the cluster did not become healthy")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        for node in self.live():
            try:
                with node.client() as c:
                    info = c.cluster("info")
                    replicas_known = sum(1 for n in self._nodes_of(c) if "slave" in n["flags"])
            except redis.RedisError:
                return False
            if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok", 0)) != 16384:
                return False
            if replicas_known < len(self.masters()) * self._replicas and self.all_alive():
                return False
        return True

    def _nodes_of(self, client: redis.Redis) -> list[dict[str, str]]:
        """``CLUSTER NODES`` as redis-py parses it: one dict per node (flags, ...)."""
        found: dict[str, dict[str, str]] = client.execute_command("CLUSTER NODES")
        return list(found.values())

    def live(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def all_alive(self) -> bool:
        return len(self.live()) == len(self.nodes)

    def _role(self, node: ClusterNode) -> str:
        with node.client() as c:
            role = c.execute_command("ROLE")
        first = role[0]
        return first.decode() if isinstance(first, bytes) else str(first)

    def masters(self) -> list[ClusterNode]:
        return [n for n in self.live() if self._role(n) == "master"]

    def replica_of(self, master: ClusterNode) -> ClusterNode:
        for node in self.live():
            with node.client() as c:
                role = c.execute_command("ROLE")
            if role[0] in (b"slave", "slave") and int(role[2]) == master.port:
                return node
        raise LookupError(f"no live replica of 127.0.0.1:{master.port}")

    def master_of_key(self, key: str) -> ClusterNode:
        with self.live()[0].client() as c:
            slot = int(c.execute_command("CLUSTER KEYSLOT", key))
            for start, end, primary, *_ in c.execute_command("CLUSTER SLOTS"):
                if int(start) <= slot <= int(end):
                    port = int(primary[1])
                    return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no master serves {key!r}")

    def wait_promoted(self, replica: ClusterNode, timeout: float = 15.0) -> None:
        """Until the replica is a master: the cluster's own failover, about twice
        ``NODE_TIMEOUT_MS`` after its master stopped answering."""
        deadline = time.monotonic() + timeout
        while self._role(replica) != "master":
            self._check_deadline(deadline, "the replica was not promoted")
            time.sleep(0.02)

    def flush(self) -> None:
        for node in self.masters():
            with node.client() as c:
                c.flushall()

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self._root, ignore_errors=True)

    def _check_deadline(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            logs = []
            for node in self.nodes:
                try:
                    with open(os.path.join(node.dir, "redis.log"), encoding="utf-8") as log:
                        logs.append(f"{node.port}: {log.read()[-600:]}")
                except OSError:
                    logs.append(f"{node.port}: (no log)")
            self.close()
            raise RuntimeError(f"{what}:\n" + "\n".join(logs))

    def __enter__(self) -> RedisClusterServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
