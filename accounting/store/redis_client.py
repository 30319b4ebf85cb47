"""The connection side of ``RedisStore``: the pool (a single Redis, a Sentinel-managed
primary through redis-py's ``Sentinel``, ``redis_sentinel``, or Redis Cluster through
redis-py's ``RedisCluster``; ``redis_url``), the registered scripts, the
translation of redis-py's errors into StoreUnavailable (once, here), the registry of
tenants (what the sweeps go through) and the runner of tenant scripts with their
fence and epoch guard (``redis_scripts``, ``redis_epoch``)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from accounting.errors import StoreUnavailable
from accounting.store import redis_scripts as lua
from accounting.store import redis_scripts_admin as lua_admin
from accounting.store import redis_scripts_workflows as lua_wf
from accounting.store.common import MAX_STORE_INT
from accounting.store.redis_codec import check_prefix, f, store_key
from accounting.store.redis_epoch import Epoch
from accounting.store.redis_sentinel import sentinel_client
from accounting.store.redis_url import (
    ClusterUrl,
    SentinelUrl,
    parse_cluster_url,
    parse_sentinel_url,
)

T = TypeVar("T")
Client = aioredis.Redis | RedisCluster

# Errors meaning "Redis cannot be used right now"; anything else is a bug and surfaces.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    rexc.ConnectionError,  # includes BusyLoadingError, MaxConnectionsError, auth failures
    rexc.TimeoutError,
    rexc.ReadOnlyError,
    rexc.OutOfMemoryError,
    rexc.MasterDownError,
    rexc.ClusterDownError,  # a failover in progress, slots not served (MasterDownError too)
    rexc.TryAgainError,  # slots moving between shards
    rexc.SlotNotCoveredError,
    rexc.AskError,  # MOVED/ASK still pointing elsewhere after the client's redirects
    rexc.ClusterError,  # "TTL exhausted": redirects and retries ran out mid-failover
    rexc.RedisClusterException,  # no node reachable to learn the slots from
    OSError,
)

_SCRIPTS = {
    "reserve": lua.RESERVE,
    "settle": lua.SETTLE,
    "status": lua_wf.STATUS,
    "complete": lua_wf.COMPLETE,
    "cancel": lua_wf.CANCEL,
    "heartbeat": lua_wf.HEARTBEAT,
    "list_workflows": lua_wf.LIST,
    "set_cap": lua_admin.SET_CAP,
    "sweep_tenant": lua_admin.SWEEP_TENANT,
    "idem_claim": lua_admin.IDEM_CLAIM,
    "idem_complete": lua_admin.IDEM_COMPLETE,
    "idem_release": lua_admin.IDEM_RELEASE,
    "open": lua_admin.OPEN,
    "check": lua_admin.CHECK,
    "accept": lua_admin.ACCEPT,
}


def _stale_connection_checks() -> dict[str, Any]:
    """Pool options so a pooled connection the server closed (a restart) is replaced
    when it is checked out: redis-py skips that check while "maintenance
    notifications" are on, which they are by default since 7.x."""
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # older redis-py: always checks
        return {}
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def _invalid(name: str, args: Sequence[Any], reply: list[Any]) -> ValueError:
    index = int(reply[1]) if len(reply) > 1 and isinstance(reply[1], int) else 0
    value = args[index - 1] if 0 < index <= len(args) else None
    return ValueError(
        f"redis script {name}: argument {index} ({value!r}) is out of range (numbers must "
        f"be finite, integers in [0, {MAX_STORE_INT}]); nothing was written"
    )


class ScriptClient:
    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        socket_timeout: float,
        socket_connect_timeout: float,
        max_connections: int,
        pool_timeout: float,
    ) -> None:
        check_prefix(prefix)
        self.url = url
        self.prefix = prefix
        self.cluster: ClusterUrl | None = parse_cluster_url(url)
        self.sentinel: SentinelUrl | None = parse_sentinel_url(url)
        self.epoch = Epoch(prefix)
        self._fence_s = socket_timeout * 0.5
        self._pool_kwargs: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
            "max_connections": max_connections,
            "retry": Retry(NoBackoff(), 0),  # a retried script could run twice
            **_stale_connection_checks(),
        }
        self._pool_timeout = pool_timeout
        self._client: Client | None = None
        self._sentinels: Sentinel | None = None
        self._shas = {
            name: hashlib.sha1(src.encode()).hexdigest() for name, src in _SCRIPTS.items()
        }
        self._tenants = store_key(prefix, "tenants")
        self._registered: set[str] = set()

    async def open(self) -> None:
        if self._client is not None:
            return
        client: Client
        if self.sentinel is not None:
            client, self._sentinels = sentinel_client(
                self.sentinel, self._pool_kwargs, self._pool_timeout
            )
        elif self.cluster is None:
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url, timeout=self._pool_timeout, **self._pool_kwargs
            )
            client = aioredis.Redis(connection_pool=pool)
        else:
            # no blocking pool here: past max_connections (per node) a call fails at once
            client = RedisCluster(
                startup_nodes=self.cluster.nodes(), require_full_coverage=False,
                **self.cluster.options, **self._pool_kwargs,
            )  # fmt: skip
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        sentinels, self._sentinels = self._sentinels, None
        if isinstance(client, RedisCluster):
            await client.aclose()
        elif client is not None:
            await client.aclose(close_connection_pool=True)
        if sentinels is not None:
            await sentinels.aclose()

    def redis(self) -> Client:
        if self._client is None:
            raise StoreUnavailable("the redis store is not open")
        return self._client

    def base(self, tenant: str) -> str:
        return f"{self.prefix}{{{tenant}}}"

    async def do(self, pending: Awaitable[T]) -> T:
        try:
            return await pending
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"redis store unavailable: {exc}") from exc

    async def script(self, name: str, keys: Sequence[str], args: Sequence[str]) -> Any:
        """Run a script; an ``invalid`` answer (an argument out of range, refused by the
        script before it wrote anything) raises ValueError."""
        reply = await self.do(self._run(name, keys, args))
        if isinstance(reply, list) and reply and reply[0] == b"invalid":
            raise _invalid(name, args, reply)
        return reply

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self.evalsha_or_eval(_SCRIPTS[name], keys, args, self._shas[name])

    async def evalsha_or_eval(
        self, source: str, keys: Sequence[str], args: Sequence[Any], sha: str | None = None
    ) -> Any:
        """Run a Lua script (not translating errors: see ``do``): EVALSHA, and EVAL when
        the node answering does not have it yet (a restart, a promoted replica). NOSCRIPT
        means nothing ran, and EVAL caches the script on that node alone; redis-py's own
        fallback loads it on every master, which fails while any master is down. For
        scripts of other modules too, whose keys share one tenant's tag."""
        client = self.redis()
        digest = sha or hashlib.sha1(source.encode()).hexdigest()
        try:
            return await client.evalsha(digest, len(keys), *keys, *args)
        except rexc.NoScriptError:
            return await client.eval(source, len(keys), *keys, *args)

    # -- the tenant registry --------------------------------------------------------
    async def register(self, tenant: str) -> None:
        """Name the tenant in the store-wide registry (``{%store}:tenants``) before its
        first script in this process: the registry is a superset of the tenants with
        state, so the sweeps reach every tenant without KEYS or SCAN."""
        if tenant not in self._registered:
            await self.do(self.redis().sadd(self._tenants, tenant))
            self._registered.add(tenant)

    async def tenants(self) -> list[str]:
        """Every registered tenant, after naming again those this process used (so a
        registry lost with its shard is rebuilt by the replicas that serve them)."""
        client = self.redis()
        if self._registered:
            await self.do(client.sadd(self._tenants, *self._registered))
        found = await self.do(cast(Awaitable[set[bytes]], client.smembers(self._tenants)))
        return sorted(member.decode(errors="replace") for member in found)

    async def tenant_script(
        self, name: str, tenant: str, keys: Sequence[str], args: Sequence[Any], fenced: bool
    ) -> list[Any]:
        """Run a tenant script under the epoch guard; a ``lost`` answer is looked into
        (``Epoch.on_lost``) and retried at most twice, ``stale`` raises."""
        self.redis()
        marker = f"{self.base(tenant)}:epoch"
        flag: str | None = None
        for _ in range(3):
            used = await self.epoch.current(self.script)
            await self.register(tenant)
            flag = flag or self.epoch.flag(tenant)
            # real time, not the injected clock: the fence bounds real waiting
            fence = f(time.time() + self._fence_s) if fenced else ""
            reply: list[Any] = await self.script(name, [marker, *keys], [used, flag, fence, *args])
            if reply[0] == b"stale":
                raise StoreUnavailable(
                    "redis answered after the store had given up on the call (paused or "
                    "overloaded); it was not applied"
                )
            if reply[0] != b"lost":
                self.epoch.saw(tenant, used)
                return reply
            flag = await self.epoch.on_lost(self.script, tenant, used, flag)
        raise StoreUnavailable(f"the epoch marker of gateway key {tenant} keeps changing")
