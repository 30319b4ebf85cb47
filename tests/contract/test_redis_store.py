"""RedisStore specifics: fail closed fast when Redis is down or stalled, recover."""

from __future__ import annotations

import asyncio
import time

import pytest

from accounting.errors import StoreUnavailable
from accounting.store.redis import RedisStore
from tests.contract.helpers import NOW, rq
from tests.support.redis_server import RedisServer

TIMEOUT = 0.3


async def _fails_fast(store: RedisStore) -> None:
    for call in (store.ping(), store.reserve(rq(1, cap_micros=10)), store.list_stalled(NOW)):
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await call
        assert time.monotonic() - started < 4 * TIMEOUT


async def test_a_stopped_redis_fails_closed_and_recovers(own_redis_server: RedisServer) -> None:
    store = RedisStore(own_redis_server.url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    await store.open()
    try:
        await store.reserve(rq(1, cap_micros=10))
        own_redis_server.stop()
        await _fails_fast(store)
        own_redis_server.start()
        await store.ping()
        got = await store.reserve(rq(1, cap_micros=10))  # the scripts are loaded again
        assert got.workflow is not None and got.workflow.reserved_micros == 1
    finally:
        await store.close()


async def test_a_paused_redis_times_out_and_recovers(own_redis_server: RedisServer) -> None:
    store = RedisStore(own_redis_server.url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    await store.open()
    try:
        await store.ping()
        own_redis_server.pause()
        try:
            await _fails_fast(store)
        finally:
            own_redis_server.resume()
        await store.ping()
        got = await store.reserve(rq(1, workflow_id="after"))
        assert got.workflow is not None
    finally:
        await store.close()


async def test_a_restart_with_a_pooled_connection_recovers(
    own_redis_server: RedisServer,
) -> None:
    store = RedisStore(own_redis_server.url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    await store.open()
    try:
        await store.reserve(rq(1))
        own_redis_server.restart()  # the pooled connection is now dead
        await asyncio.sleep(0.05)  # let the loop see the close (the restart blocked it)
        got = await store.reserve(rq(2))
        assert got.workflow is not None and got.workflow.reserved_micros == 2
    finally:
        await store.close()


async def test_a_closed_store_is_unavailable(own_redis_server: RedisServer) -> None:
    store = RedisStore(own_redis_server.url)
    with pytest.raises(StoreUnavailable):
        await store.ping()
