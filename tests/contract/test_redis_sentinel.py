"""RedisStore on a Sentinel-managed primary, beyond the contract suite (which runs on
it too): the URL, and a failover the same store object follows to the new primary
with its data."""

from __future__ import annotations

import asyncio
import time

import pytest

from accounting.errors import StoreUnavailable
from accounting.store import open_store
from accounting.store.redis import RedisStore
from accounting.store.redis_codec import tenant_tag
from accounting.store.redis_url import parse_sentinel_url
from tests.contract.helpers import NOW, charge, rq
from tests.support.redis_sentinel import SERVICE, RedisSentinelServer, SentinelNode

SWITCH_S = 5.0  # the store finds the new primary within about a second of the switch


def test_sentinel_urls() -> None:
    store = open_store("redis+sentinel://10.0.0.1:26379,10.0.0.2,[::1]:5000/mymaster/2")
    assert isinstance(store, RedisStore)
    parsed = parse_sentinel_url("redis+sentinel://10.0.0.1:26379,10.0.0.2,[::1]:5000/mymaster/2")
    assert parsed is not None
    assert parsed.hosts == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 5000))
    assert (parsed.service, parsed.db, parsed.options) == ("mymaster", 2, {"ssl": False})
    parsed = parse_sentinel_url("rediss+sentinel://app:s%40cret@s1/my%20service/")
    assert parsed is not None
    assert (parsed.hosts, parsed.service, parsed.db) == ((("s1", 26379),), "my service", 0)
    assert parsed.options == {"ssl": True, "username": "app", "password": "s@cret"}
    assert parse_sentinel_url("redis://h:6379/0") is None
    assert parse_sentinel_url("redis+cluster://h:7000") is None


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("redis+sentinel://h:26379", "needs the service name"),
        ("redis+sentinel://h:26379/", "needs the service name"),
        ("redis+sentinel://h:26379//1", "needs the service name"),
        ("redis+sentinel:///mymaster", "needs a host"),
        ("redis+sentinel://h:x/mymaster", "bad port"),
        ("redis+sentinel://h:0/mymaster", "bad host or port"),
        ("redis+sentinel://h:70000/mymaster", "bad host or port"),
        ("redis+sentinel://h/mymaster/x", "bad database"),
        ("redis+sentinel://h/mymaster/-1", "bad database"),
        ("redis+sentinel://h/mymaster/1/2", "the path is"),
        ("redis+sentinel://h/mymaster?db=1", "no ?options"),
    ],
)
def test_bad_sentinel_urls_are_refused(url: str, what: str) -> None:
    with pytest.raises(ValueError, match="store URL") as refused:
        open_store(url)
    assert what in str(refused.value)


def _holds_workflow(node: SentinelNode, prefix: str, workflow_id: str) -> bool:
    with node.client(1) as c:
        return bool(c.exists(f"{tenant_tag(prefix, 'team-a')}:wf:{workflow_id}"))


async def _probe_until_on(store: RedisStore, node: SentinelNode) -> int:
    """Reserve a probe workflow per attempt until one lands on ``node``; the attempts
    made. A call during the switch may be refused (StoreUnavailable) or land on the old
    primary, which Sentinel has not made a replica yet."""
    deadline, attempts = time.monotonic() + SWITCH_S, 0
    while time.monotonic() < deadline:
        attempts += 1
        probe = f"probe-{attempts}"
        try:
            await store.reserve(rq(1, workflow_id=probe, cap_micros=10))
        except StoreUnavailable:
            pass
        else:
            if _holds_workflow(node, store.prefix, probe):
                return attempts
        await asyncio.sleep(0.05)  # a call every 50 ms, as traffic would come
    raise AssertionError(f"the store did not reach the new primary in {SWITCH_S}s")


async def test_a_failover_is_followed_to_the_new_primary_with_the_data() -> None:
    with RedisSentinelServer() as sentinel:
        old, new = sentinel.primary(), sentinel.replica()
        store = RedisStore(sentinel.url_for(1), prefix="fo:")
        await store.open()
        try:
            held = await store.reserve(rq(300, cap_micros=1_000))
            with old.client() as c:  # the replica has every write so far
                c.set("fo:sync", "1")
                assert c.wait(1, 2000) == 1
            with sentinel.sentinel.client() as c:
                assert c.execute_command("SENTINEL FAILOVER", SERVICE)
            sentinel.wait_promoted(new)
            await _probe_until_on(store, new)
            state = await store.get_workflow("team-a", "wf-1", NOW + 1)
            assert state is not None and state.reserved_micros == 300
            settled = await store.settle(held.reservation, charge(250), NOW + 1)
            assert settled.workflow is not None and settled.workflow.spent_micros == 250
            with new.client(1) as c:
                spent = c.hget(f"{tenant_tag('fo:', 'team-a')}:wf:wf-1", "spent_micros")
                assert spent == b"250"
        finally:
            await store.close()
