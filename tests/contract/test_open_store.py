"""open_store: picks the implementation from the URL."""

from __future__ import annotations

import pytest

from accounting.store import open_store, sqlite_path
from accounting.store.redis import RedisStore
from accounting.store.sqlite import SqliteStore


def test_sqlite_urls() -> None:
    store = open_store("sqlite:///var/lib/spendgate/spend.db")
    assert isinstance(store, SqliteStore) and store.path == "/var/lib/spendgate/spend.db"
    assert sqlite_path("sqlite:////abs/x.db") == "/abs/x.db"
    assert sqlite_path("sqlite:///./spendgate.db") == "./spendgate.db"
    assert sqlite_path("sqlite:///../up.db") == "../up.db"
    assert sqlite_path("sqlite:///:memory:") == ":memory:"


def test_sqlite_writer_option() -> None:
    assert isinstance(store := open_store("sqlite:///x.db"), SqliteStore)
    assert store.writer == "thread" and store.path == "/x.db"
    assert isinstance(store := open_store("sqlite:///x.db?writer=loop"), SqliteStore)
    assert store.writer == "loop" and store.path == "/x.db"
    for bad in ("sqlite:///x.db?writer=disk", "sqlite:///x.db?mode=ro"):
        with pytest.raises(ValueError, match=r"writer=loop\|thread"):
            open_store(bad)


def test_redis_urls() -> None:
    store = open_store("redis://127.0.0.1:6380/2")
    assert isinstance(store, RedisStore) and store.url == "redis://127.0.0.1:6380/2"
    assert isinstance(open_store("rediss://cache.example:6380/0"), RedisStore)


@pytest.mark.parametrize(
    "url", ["postgres://db/x", "spend.db", "sqlite://relative.db", "sqlite:///", "redis:///0"]
)
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="store URL"):
        open_store(url)
