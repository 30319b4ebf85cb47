"""RedisStore epochs: a Redis that lost its data (restarted empty, flushed) is noticed
by every replica and fails closed until an operator accepts the reset; a fresh Redis
is not a reset; replicas that missed the acceptance catch up without a false alarm."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis

from accounting.errors import StoreReset
from accounting.store.redis import RedisStore
from tests.contract.helpers import NOW, charge, rq
from tests.support.redis_server import RedisServer


@asynccontextmanager
async def _stores(server: RedisServer, count: int) -> AsyncIterator[list[RedisStore]]:
    stores = [RedisStore(server.url, socket_timeout=0.5) for _ in range(count)]
    try:
        for store in stores:
            await store.open()
        yield stores
    finally:
        for store in stores:
            await store.close()


async def _restart(server: RedisServer) -> None:
    """Restart (no persistence: empty), then let the loop see the pooled connections
    close (the restart blocked it), as a real Redis restart is observed."""
    server.restart()
    await asyncio.sleep(0.05)


def _flush(server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.mark.parametrize("lose", ["restart", "flushdb"])
async def test_a_lost_store_fails_closed_everywhere_until_accepted(
    own_redis_server: RedisServer, lose: str
) -> None:
    async with _stores(own_redis_server, 2) as (a, b):
        before = await a.reserve(rq(100, cap_micros=1_000))  # a has seen team-a
        await b.reserve(rq(5, key="team-b", workflow_id="wb"))  # b has seen team-b
        if lose == "restart":
            await _restart(own_redis_server)
        else:
            _flush(own_redis_server)

        with pytest.raises(StoreReset, match="accept-reset"):
            await a.reserve(rq(1))
        info = a.reset_info()
        assert info is not None and "team-a" in str(info["reason"])
        with pytest.raises(StoreReset):  # b: through a tenant it had seen
            await b.reserve(rq(1, key="team-b", workflow_id="wb"))
        async with _stores(own_redis_server, 1) as (c,):  # opened later: starts reset
            assert c.reset_info() == info
            for store in (a, b, c):
                with pytest.raises(StoreReset):
                    await store.ping()
                with pytest.raises(StoreReset):
                    await store.idem_claim("team-a", "chat:k", "fp", 30.0, NOW)

            await a.accept_reset(NOW + 1)
            assert a.reset_info() is None
            for store in (b, c):
                assert store.reset_info() is not None  # until its next check
                await store.check(NOW + 2)
                assert store.reset_info() is None
            for store in (a, b, c):
                await store.ping()
                got = await store.reserve(rq(10, cap_micros=500, now=NOW + 3))
                assert got.workflow is not None

        # what was recorded before the loss is gone; a late settle of a hold from
        # before it is an orphan, charged anyway
        late = await a.settle(before.reservation, charge(80), NOW + 4)
        assert late.orphan and late.workflow is not None
        assert (late.workflow.cap_micros, late.workflow.spent_micros) == (500, 80)
        assert late.workflow.reserved_micros == 30
        again = await a.settle(before.reservation, charge(80), NOW + 5)
        assert not again.orphan and again.workflow == late.workflow  # charged once


async def test_a_replica_notices_by_its_check(own_redis_server: RedisServer) -> None:
    async with _stores(own_redis_server, 2) as (a, b):
        await a.reserve(rq(1))
        await b.check(NOW)
        assert b.reset_info() is None
        await _restart(own_redis_server)
        await b.check(NOW + 1)  # the epoch is gone
        info = b.reset_info()
        assert info is not None and "epoch is gone" in str(info["reason"])
        await a.check(NOW + 2)  # and b's finding is shared
        assert a.reset_info() == info


async def test_a_fresh_redis_is_not_a_reset(own_redis_server: RedisServer) -> None:
    async with _stores(own_redis_server, 2) as (a, b):
        await a.reserve(rq(1, key="team-a"))
        await b.reserve(rq(1, key="team-a"))  # a's marker, b's epoch: the same
        await b.reserve(rq(1, key="team-b"))
        await a.reserve(rq(1, key="team-b"))
        for store in (a, b):
            await store.check(NOW)
            await store.ping()
            assert store.reset_info() is None
        async with _stores(own_redis_server, 1) as (c,):
            got = await c.reserve(rq(1, key="team-a"))
            assert got.workflow is not None and got.workflow.reserved_micros == 3
            assert c.reset_info() is None


async def test_a_store_started_on_a_lost_redis_is_found_out(own_redis_server: RedisServer) -> None:
    async with _stores(own_redis_server, 1) as (a,):
        await a.reserve(rq(1))
        await _restart(own_redis_server)
        async with _stores(own_redis_server, 1) as (fresh,):  # sees an empty Redis
            assert fresh.reset_info() is None
            await a.check(NOW)  # the epoch a knows was replaced by a new one
            assert a.reset_info() is not None
            await fresh.check(NOW)
            assert fresh.reset_info() is not None


async def test_replicas_that_missed_the_acceptance_catch_up(own_redis_server: RedisServer) -> None:
    async with _stores(own_redis_server, 2) as (a, b):
        await a.reserve(rq(1))
        await b.reserve(rq(1))  # b has seen team-a too
        await _restart(own_redis_server)
        await b.reserve(rq(1, key="team-c"))  # unseen by b: written before anyone noticed
        with pytest.raises(StoreReset):
            await a.reserve(rq(1))
        await a.accept_reset(NOW)  # before b ever checked
        await a.reserve(rq(2))  # team-a's marker now holds the accepted epoch
        got = await b.reserve(rq(3))  # b adopts the accepted epoch instead of alarming
        assert got.workflow is not None and got.workflow.reserved_micros == 5
        await a.reserve(rq(4, key="team-c"))  # a leftover marker from before acceptance
        for store in (a, b):
            await store.check(NOW + 1)
            assert store.reset_info() is None


async def test_the_data_coming_back_ends_the_reset(own_redis_server: RedisServer) -> None:
    async with _stores(own_redis_server, 1) as (a,):
        await a.reserve(rq(1))
        await _restart(own_redis_server)
        await a.check(NOW)
        info = a.reset_info()
        assert info is not None
        # what a failback to the old primary looks like: its epoch, no reset recorded
        client = redis.Redis.from_url(own_redis_server.url)
        try:
            client.delete("spendgate:{%store}:reset_detected")
            client.set("spendgate:{%store}:epoch", str(info["epoch"]))
        finally:
            client.close()
        await a.check(NOW + 1)
        assert a.reset_info() is None
