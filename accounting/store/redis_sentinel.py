"""The client of a Sentinel-managed primary (``redis+sentinel://``; ``redis_url``):
redis-py's asyncio ``Sentinel(...).master_for(service)``, whose connections ask the
sentinels for the primary's address each time they connect.

An old primary that is still up after a failover keeps accepting writes until
Sentinel reconfigures it as a replica (seconds later, and then its data is replaced
by the new primary's), so pooled connections must not stay on it: the pool asks the
sentinels again at most every ``RECHECK_S`` (in the background, never delaying a
call) and, once the primary moved, closes its idle connections and every busy one
when it comes back, so the next call connects to the new primary. A primary that is
down fails its calls (StoreUnavailable) until the sentinels name the new one.

The pool blocks like the single-Redis one (``BlockingConnectionPool``): past
``max_connections`` a call waits up to the pool timeout for a connection.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool, Connection
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from accounting.store.redis_url import SentinelUrl

RECHECK_S = 1.0


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's address lookup with the blocking checkout (``SentinelConnectionPool``
    passes its other options on to ``BlockingConnectionPool``: ``timeout``) and the
    periodic recheck of the primary's address described above."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]
        self._checked_at = float("-inf")
        self._recheck: asyncio.Task[None] | None = None

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        if time.monotonic() - self._checked_at >= RECHECK_S and self._recheck is None:
            self._checked_at = time.monotonic()
            self._recheck = asyncio.get_running_loop().create_task(self._ask_sentinels())
        checkout = super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        connection: AbstractConnection = await checkout
        return connection

    async def _ask_sentinels(self) -> None:
        try:
            # closes the idle connections when the primary moved
            await self.get_master_address()  # type: ignore[no-untyped-call]
        except (rexc.RedisError, OSError):
            pass  # no sentinel answers: the primary may be fine; a new connection fails
        finally:
            self._recheck = None

    async def release(self, connection: AbstractConnection) -> None:
        address = self.master_address
        at = (connection.host, connection.port) if isinstance(connection, Connection) else None
        if self.is_master and address is not None and at != address:
            await connection.disconnect()  # its next use connects to the new primary
        await super().release(connection)

    async def disconnect(self, inuse_connections: bool = True) -> None:
        task = self._recheck
        if inuse_connections and task is not None and task is not asyncio.current_task():
            task.cancel()
            self._recheck = None
        await super().disconnect(inuse_connections)


def sentinel_client(
    parsed: SentinelUrl, pool_kwargs: dict[str, Any], pool_timeout: float
) -> tuple[aioredis.Redis, Sentinel]:
    """The primary's client and the sentinel manager (to close with it). The sentinels
    are asked with the same timeouts, no retries and stale-connection checks; TLS to
    them follows the scheme, the credentials are the primary's."""
    asked = {
        key: value
        for key, value in pool_kwargs.items()
        if key.startswith("socket_") or key in ("retry", "maint_notifications_config")
    }
    asked["ssl"] = parsed.options["ssl"]
    manager = Sentinel(list(parsed.hosts), sentinel_kwargs=asked)  # type: ignore[no-untyped-call]
    client: aioredis.Redis = manager.master_for(
        parsed.service, connection_pool_class=BlockingSentinelPool, db=parsed.db,
        timeout=pool_timeout, **parsed.options, **pool_kwargs,
    )  # fmt: skip
    return client, manager
