"""The store seam (see ``base``) and ``open_store``, which picks an implementation by URL."""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs, urlsplit

from accounting.store.base import Store


def sqlite_path(url: str) -> str:
    """``sqlite:///abs/path.db`` -> ``/abs/path.db``; ``sqlite:///./rel.db`` and
    ``sqlite:///../rel.db`` stay relative to the working directory;
    ``sqlite:////abs/path.db`` is absolute too; ``sqlite:///:memory:`` is in-memory."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(
            f"store URL {url!r}: a sqlite URL needs a path, like sqlite:///var/lib/spendgate.db"
        )
    rest = url[len(prefix) :]
    if rest == ":memory:" or rest.startswith(("/", "./", "../")):
        return rest
    return "/" + rest


def open_store(url: str) -> Store:
    """A store for ``url`` (not opened yet: call ``await store.open()``).

    ``sqlite:///path.db`` (see ``sqlite_path``), ``redis://host:port/db`` /
    ``rediss://host:port/db`` (TLS), or Redis Cluster:
    ``redis+cluster://host:port[,host:port...]`` / ``rediss+cluster://...``, or a
    Sentinel-managed primary: ``redis+sentinel://host:port[,host:port...]/service[/db]``
    / ``rediss+sentinel://...`` (see ``redis_url``). Anything else raises ValueError.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        from accounting.store.sqlite import SqliteStore

        path, _, query = url.partition("?")
        return SqliteStore(sqlite_path(path), writer=_sqlite_writer(url, query))
    if scheme in ("redis", "rediss"):
        if not urlsplit(url).hostname:
            raise ValueError(f"store URL {url!r}: a redis URL needs a host, like redis://h:6379/0")
        from accounting.store.redis import RedisStore

        return RedisStore(url)
    if scheme in ("redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel"):
        from accounting.store.redis import RedisStore

        return RedisStore(url)  # the URL is checked here: ValueError names what is wrong
    shown = scheme or "(none)"
    raise ValueError(
        f"store URL {url!r}: unsupported scheme {shown}; use sqlite:///path.db, "
        "redis://host:port/db, rediss://host:port/db, redis+cluster://host:port,host:port "
        "or redis+sentinel://host:port,host:port/service/db"
    )


def _sqlite_writer(url: str, query: str) -> Literal["loop", "thread"]:
    """``?writer=loop`` commits the request path's writes on the event loop
    (``sqlite_loop``); the default keeps every write on the store's thread, whose
    timeouts stay honest when a disk stalls."""
    options = parse_qs(query, keep_blank_values=True)
    writer = options.pop("writer", ["thread"])[-1]
    if options or writer not in ("loop", "thread"):
        raise ValueError(f"store URL {url!r}: the only sqlite option is writer=loop|thread")
    return "loop" if writer == "loop" else "thread"
