"""RedisStore specifics: fail closed fast when Redis is down or stalled, recover, and
never apply late what timed out (fences). Data loss (epochs): test_redis_epoch."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from accounting.errors import StoreReset, StoreUnavailable
from accounting.store.redis import RedisStore
from tests.contract.helpers import NOW, charge, rq
from tests.support.redis_server import RedisServer

TIMEOUT = 0.3


def _store(server: RedisServer) -> RedisStore:
    return RedisStore(server.url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)


async def _fails_fast(store: RedisStore) -> None:
    for call in (store.ping(), store.reserve(rq(1, cap_micros=10)), store.list_stalled(NOW)):
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await call
        assert time.monotonic() - started < 4 * TIMEOUT


async def test_a_stopped_redis_fails_closed_and_an_empty_restart_is_a_reset(
    own_redis_server: RedisServer,
) -> None:
    store = _store(own_redis_server)
    await store.open()
    try:
        await store.reserve(rq(1, cap_micros=10))
        own_redis_server.stop()
        await _fails_fast(store)
        own_redis_server.start()  # no persistence: it comes back empty
        with pytest.raises(StoreReset):
            await store.ping()
        await store.accept_reset(NOW)
        await store.ping()
        got = await store.reserve(rq(1, cap_micros=10))  # the scripts are loaded again
        assert got.workflow is not None and got.workflow.reserved_micros == 1
    finally:
        await store.close()


async def test_a_paused_redis_times_out_and_recovers(own_redis_server: RedisServer) -> None:
    store = _store(own_redis_server)
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


async def _until(check: redis.Redis, key: str, field: str, want: bytes) -> None:
    """Wait (bounded) for the resumed server to reach the calls it had buffered."""
    deadline = time.monotonic() + 5
    while check.hget(key, field) != want:
        assert time.monotonic() < deadline, f"{key} {field} never became {want!r}"
        await asyncio.sleep(0.01)


async def test_a_reserve_that_timed_out_never_takes_effect(own_redis_server: RedisServer) -> None:
    store = _store(own_redis_server)
    await store.open()
    try:
        # two pooled connections, both scripts loaded: the calls below are sent at once
        warm = await asyncio.gather(store.reserve(rq(10, cap_micros=1_000)), store.reserve(rq(0)))
        await asyncio.gather(*(store.settle(w.reservation, charge(5), NOW) for w in warm))
        first = await store.reserve(rq(100))
        own_redis_server.pause()
        try:
            late = await asyncio.gather(
                store.settle(first.reservation, charge(60), NOW + 1),  # unfenced: lands later
                store.reserve(rq(200, now=NOW + 2)),  # fenced: Redis gets to it too late
                return_exceptions=True,
            )
        finally:
            own_redis_server.resume()
        assert all(isinstance(outcome, StoreUnavailable) for outcome in late)
        check = redis.Redis.from_url(own_redis_server.url)
        try:
            wf = "spendgate:{team-a}:wf:wf-1"
            await _until(check, wf, "spent_micros", b"70")  # the buffered calls ran
            assert check.hget(wf, "reserved_micros") == b"0"
            settled = {f"spendgate:{{team-a}}:h:{r.id}".encode() for r in
                       (warm[0].reservation, warm[1].reservation, first.reservation)}  # fmt: skip
            # only the settled holds' tombstones: no hold of the timed-out reserve
            assert set(check.keys("spendgate:{team-a}:h:*")) == settled
            assert check.zcard("spendgate:{team-a}:leases") == 0
        finally:
            check.close()
        state = await store.get_workflow("team-a", "wf-1", NOW + 3)
        assert state is not None and (state.spent_micros, state.reserved_micros) == (70, 0)
    finally:
        await store.close()


async def test_a_restart_with_a_pooled_connection_recovers(
    own_redis_server: RedisServer,
) -> None:
    store = _store(own_redis_server)
    await store.open()
    try:
        await store.reserve(rq(1))
        own_redis_server.restart()  # the pooled connection is now dead, the data gone
        await asyncio.sleep(0.05)  # let the loop see the close (the restart blocked it)
        with pytest.raises(StoreReset):  # a new connection answered: the data is gone
            await store.reserve(rq(2))
        await store.accept_reset(NOW)
        got = await store.reserve(rq(2))
        assert got.workflow is not None and got.workflow.reserved_micros == 2
    finally:
        await store.close()


async def test_a_closed_store_is_unavailable(own_redis_server: RedisServer) -> None:
    store = RedisStore(own_redis_server.url)
    with pytest.raises(StoreUnavailable):
        await store.ping()


async def test_an_unreachable_redis_at_open_is_not_fatal(own_redis_server: RedisServer) -> None:
    own_redis_server.stop()
    store = _store(own_redis_server)
    await store.open()  # the epoch is read later
    try:
        with pytest.raises(StoreUnavailable):
            await store.reserve(rq(1))
        own_redis_server.start()
        got = await store.reserve(rq(1))  # a fresh Redis: a new epoch, no reset
        assert got.workflow is not None and store.reset_info() is None
    finally:
        await store.close()


async def test_ping_writes(own_redis_server: RedisServer) -> None:
    store = _store(own_redis_server)
    await store.open()
    check = redis.Redis.from_url(own_redis_server.url)
    try:
        await store.ping()
        assert check.get("spendgate:{%store}:ready") == b"1"
        assert 0 < check.pttl("spendgate:{%store}:ready") <= 10_000
        check.config_set("maxmemory", "1")  # full: every write is refused
        with pytest.raises(StoreUnavailable, match="maxmemory"):
            await store.ping()
        check.config_set("maxmemory", "0")
        check.replicaof("127.0.0.1", "1")  # demoted to a (read-only) replica
        with pytest.raises(StoreUnavailable, match="read only"):
            await store.ping()
        check.replicaof("no", "one")
        await store.ping()
    finally:
        check.close()
        await store.close()


async def test_tenant_data_shares_one_hash_tag(own_redis_server: RedisServer) -> None:
    store = _store(own_redis_server)
    await store.open()
    check = redis.Redis.from_url(own_redis_server.url, decode_responses=True)
    try:
        got = await store.reserve(rq(5, key="team:{x}"))
        claim = await store.idem_claim("team:{x}", "chat:k", "fp", 30.0, NOW)
        assert claim.token is not None
        await store.settle(got.reservation, charge(5), NOW)
        tagged = set(check.keys("spendgate:{team%3A%7Bx%7D}:*"))
        assert "spendgate:{team%3A%7Bx%7D}:idem:chat:k" in tagged
        assert "spendgate:{team%3A%7Bx%7D}:epoch" in tagged
        assert "spendgate:{team%3A%7Bx%7D}:ledger" in tagged
        assert "spendgate:{team%3A%7Bx%7D}:running" in tagged
        store_wide = set(check.keys("spendgate:{%store}:*"))
        assert store_wide == {"spendgate:{%store}:epoch", "spendgate:{%store}:tenants"}
        assert set(check.keys("*")) == tagged | store_wide  # nothing outside a hash tag
        assert check.smembers("spendgate:{%store}:tenants") == {"team%3A%7Bx%7D"}
        entries = check.xrevrange("spendgate:{team%3A%7Bx%7D}:ledger", count=1)
        assert entries is not None
        _, entry = entries[0]
        assert entry is not None and entry["rule"] == "reported"
    finally:
        check.close()
        await store.close()
