"""The store seam (see ``base``) and ``open_store``, which picks an implementation by URL."""

from __future__ import annotations

from urllib.parse import urlsplit

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

    ``sqlite:///path.db`` (see ``sqlite_path``), or ``redis://host:port/db`` /
    ``rediss://host:port/db`` (TLS). Anything else raises ValueError.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        from accounting.store.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url))
    if scheme in ("redis", "rediss"):
        if not urlsplit(url).hostname:
            raise ValueError(f"store URL {url!r}: a redis URL needs a host, like redis://h:6379/0")
        from accounting.store.redis import RedisStore

        return RedisStore(url)
    shown = scheme or "(none)"
    raise ValueError(
        f"store URL {url!r}: unsupported scheme {shown}; use sqlite:///path.db, "
        "redis://host:port/db or rediss://host:port/db"
    )
