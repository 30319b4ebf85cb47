"""Fixtures of the store contract suite: every test runs on SQLite, on a single Redis,
on a Sentinel-managed primary and on Redis Cluster.

The Redis side runs on a private ``redis-server`` (``tests.support.redis_server``),
database 1, flushed before each test, each test also under its own key prefix. The
Sentinel side runs on a private primary, replica and sentinel
(``tests.support.redis_sentinel``), started once for the session, reached through a
``redis+sentinel://`` URL, database 1 of the primary flushed before each test. The
cluster side runs on a private three-master, three-replica cluster
(``tests.support.redis_cluster``), started once for the session, every master
flushed before each test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from accounting.store.base import Store
from accounting.store.redis import RedisStore
from accounting.store.sqlite import SqliteStore
from tests.support.redis_cluster import RedisClusterServer
from tests.support.redis_sentinel import RedisSentinelServer
from tests.support.redis_server import RedisServer

REDIS_DB = 1


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServer]:
    cluster = RedisClusterServer()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinelServer]:
    sentinel = RedisSentinelServer()
    sentinel.start()
    try:
        yield sentinel
    finally:
        sentinel.close()


class StoreFactory:
    """Builds unopened stores of one backend. Stores built with the same ``namespace``
    share state (two replicas); a new namespace is a clean slate."""

    def __init__(self, backend: str, tmp_path: Path, redis_url: str | None) -> None:
        self.backend = backend
        self._tmp_path = tmp_path
        self._redis_url = redis_url
        self._run = uuid.uuid4().hex[:8]
        self._count = 0

    def fresh_namespace(self) -> str:
        self._count += 1
        return f"ns{self._count}"

    def __call__(self, namespace: str = "main", **kwargs: Any) -> Store:
        if self.backend == "sqlite":
            return SqliteStore(str(self._tmp_path / f"{namespace}.db"), **kwargs)
        assert self._redis_url is not None
        # connecting may take longer than the store's default second on a loaded
        # machine (a race opens dozens of connections at once); calls keep their limits
        kwargs.setdefault("socket_connect_timeout", 5.0)
        return RedisStore(self._redis_url, prefix=f"t{self._run}:{namespace}:", **kwargs)


@pytest.fixture(params=["sqlite", "redis", "sentinel", "cluster"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_factory(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    if backend == "sqlite":
        return StoreFactory(backend, tmp_path, None)
    if backend == "cluster":
        cluster: RedisClusterServer = request.getfixturevalue("redis_cluster")
        cluster.flush()
        return StoreFactory(backend, tmp_path, cluster.url)
    if backend == "sentinel":
        sentinel: RedisSentinelServer = request.getfixturevalue("redis_sentinel")
        sentinel.flush(REDIS_DB)
        return StoreFactory(backend, tmp_path, sentinel.url_for(REDIS_DB))
    server: RedisServer = request.getfixturevalue("redis_server")
    url = server.url_for(REDIS_DB)
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return StoreFactory(backend, tmp_path, url)


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[Store]:
    opened = store_factory()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
