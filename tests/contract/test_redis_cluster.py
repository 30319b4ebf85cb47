"""RedisStore on Redis Cluster, beyond the contract suite (which runs on it too): the
URL, every key under a hash tag, tenants spread over shards and swept there without
KEYS or SCAN, and a shard lost without a replica failing closed only its tenants."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from accounting.errors import StoreUnavailable
from accounting.store import open_store
from accounting.store.redis import RedisStore
from accounting.store.redis_codec import tenant_tag
from accounting.store.redis_url import parse_cluster_url
from tests.contract.helpers import HOUR, NOW, budget, charge, rq
from tests.support.redis_cluster import RedisClusterServer

TENANTS = [f"team-{i}" for i in range(12)]


def test_cluster_urls() -> None:
    store = open_store("redis+cluster://10.0.0.1:7000,10.0.0.2:7001,[::1]:7002")
    assert isinstance(store, RedisStore)
    parsed = parse_cluster_url("rediss+cluster://app:s%40cret@h1,h2:7001/0")
    assert parsed is not None
    assert parsed.hosts == (("h1", 6379), ("h2", 7001))
    assert parsed.options == {"ssl": True, "username": "app", "password": "s@cret"}
    assert parse_cluster_url("redis://h:6379/0") is None


@pytest.mark.parametrize(
    "url",
    ["redis+cluster://", "redis+cluster://h:1/2", "redis+cluster://h:x", "redis+cluster://h:0"],
)
def test_bad_cluster_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="store URL"):
        open_store(url)


def test_a_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ValueError, match="prefix"):
        RedisStore("redis+cluster://h:7000", prefix="x{y}:")


@pytest.fixture
async def store(redis_cluster: RedisClusterServer) -> AsyncIterator[RedisStore]:
    redis_cluster.flush()
    opened = RedisStore(redis_cluster.url, prefix=f"c{uuid.uuid4().hex[:8]}:")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def _every_key(cluster: RedisClusterServer, prefix: str) -> dict[str, int]:
    """Each key of the store (a test may scan) and the port of the master holding it."""
    found: dict[str, int] = {}
    for node in cluster.masters():
        with node.client() as c:
            for key in c.scan_iter(f"{prefix}*"):
                found[key.decode()] = node.port
    return found


async def test_tenants_spread_over_shards_and_one_sweep_reaches_them_all(
    store: RedisStore, redis_cluster: RedisClusterServer
) -> None:
    for tenant in TENANTS:
        await store.reserve(rq(100, key=tenant, lease_s=10, key_budget=budget(1_000)))
        await store.reserve(
            rq(50, key=tenant, workflow_id=None, lease_s=10, key_budget=budget(1_000))
        )
    keys = _every_key(redis_cluster, store.prefix)
    assert len(set(keys.values())) == 3  # every master holds some tenant
    for key in keys:  # every key is under a tag: a tenant's or the store's
        assert key.startswith(store.prefix + "{")
    for tenant in TENANTS:
        base = tenant_tag(store.prefix, tenant)
        assert len({port for key, port in keys.items() if key.startswith(base)}) == 1
    assert await store.sweep(NOW + 11) == 2 * len(TENANTS)
    for tenant in TENANTS:
        state = await store.get_workflow(tenant, "wf-1", NOW + 11)
        assert state is not None and (state.spent_micros, state.expired_holds) == (100, 1)
        window = await store.key_spend(tenant, HOUR, NOW + 11)
        assert (window.spent_micros, window.reserved_micros) == (150, 0)
    assert len(await store.list_stalled(NOW + 100, limit=100)) == len(TENANTS)
    assert await store.count_stalled(NOW + 100) == len(TENANTS)


async def test_a_lost_shard_without_replica_fails_closed_only_its_tenants() -> None:
    with RedisClusterServer(replicas=0, extra=("--cluster-require-full-coverage", "no")) as cluster:
        store = RedisStore(cluster.url, prefix="lost:")
        await store.open()
        try:
            held = {t: await store.reserve(rq(100, key=t, cap_micros=1_000)) for t in TENANTS}
            dead = cluster.master_of_key(tenant_tag(store.prefix, TENANTS[0]))
            on_dead = {t for t in TENANTS if cluster.master_of_key(tenant_tag("lost:", t)) is dead}
            dead.kill()
            for tenant in TENANTS:
                if tenant in on_dead:
                    with pytest.raises(StoreUnavailable):
                        await store.reserve(rq(100, key=tenant, cap_micros=1_000))
                    continue
                settled = await store.settle(held[tenant].reservation, charge(60), NOW + 1)
                assert settled.workflow is not None and settled.workflow.spent_micros == 60
        finally:
            await store.close()


def test_the_cluster_is_our_own(redis_cluster: RedisClusterServer) -> None:
    assert len(redis_cluster.nodes) == 6 and len(redis_cluster.masters()) == 3
    assert 6379 not in {node.port for node in redis_cluster.nodes}
