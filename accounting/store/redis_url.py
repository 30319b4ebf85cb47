"""Store URLs of Redis Cluster and Redis Sentinel.

Cluster: ``redis+cluster://[user[:password]@]host:port[,host:port...]``
(``rediss+cluster://`` for TLS). The hosts are startup nodes: any reachable one is
enough to discover the cluster (the client learns the rest from ``CLUSTER SLOTS``).
A cluster has only database 0, so a path other than ``/`` or ``/0`` is refused.

Sentinel: ``redis+sentinel://[user[:password]@]host:port[,host:port...]/<service>[/<db>]``
(``rediss+sentinel://`` for TLS). The hosts are sentinels (port 26379 unless given),
asked for the address of the service's primary before each new connection, so the
store follows a failover; one primary serves every key (the layout is a single
Redis's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio.cluster import ClusterNode

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
DEFAULT_PORT = 6379


@dataclass(frozen=True)
class ClusterUrl:
    hosts: tuple[tuple[str, int], ...]
    options: dict[str, Any] = field(default_factory=dict)  # username, password, ssl

    def nodes(self) -> list[ClusterNode]:
        return [ClusterNode(host, port) for host, port in self.hosts]


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme.lower() in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterUrl | None:
    """The startup nodes and options of a cluster URL; None for any other URL;
    ValueError for a cluster URL without hosts, with a bad port or a database."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in CLUSTER_SCHEMES:
        return None
    if parts.path not in ("", "/", "/0"):
        raise ValueError(f"store URL {url!r}: Redis Cluster has only database 0")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    options: dict[str, Any] = {"ssl": scheme == "rediss+cluster"}
    if userinfo:
        user, _, password = userinfo.partition(":")
        options["username"] = unquote(user) or None
        options["password"] = unquote(password) or None
    hosts = tuple(_host(url, item, DEFAULT_PORT) for item in hostlist.split(",") if item.strip())
    if not hosts:
        raise ValueError(
            f"store URL {url!r}: a cluster URL needs a host, like redis+cluster://h1:6379,h2:6379"
        )
    return ClusterUrl(hosts, options)


def _host(url: str, item: str, default_port: int) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [v6 address]:port
        host, _, rest = item[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ValueError(f"store URL {url!r}: bad port in {item!r}") from None
    if not host or not 0 < port < 65536:
        raise ValueError(f"store URL {url!r}: bad host or port in {item!r}")
    return host, port


# -- Redis Sentinel -----------------------------------------------------------------
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelUrl:
    """The sentinels to ask, the service (``sentinel monitor <name>``) whose primary is
    the store, its database and the options of the connections to the primary."""

    hosts: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # username, password, ssl


def parse_sentinel_url(url: str) -> SentinelUrl | None:
    """``redis+sentinel://[user[:password]@]host:port[,host:port...]/<service>[/<db>]``
    (``rediss+sentinel://`` for TLS to the sentinels and the primary; the credentials
    are the primary's); None for any other URL; ValueError naming what is wrong."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SENTINEL_SCHEMES:
        return None
    if parts.query or parts.fragment:
        raise ValueError(f"store URL {url!r}: a sentinel URL takes no ?options")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    options: dict[str, Any] = {"ssl": scheme == "rediss+sentinel"}
    if userinfo:
        user, _, password = userinfo.partition(":")
        options["username"] = unquote(user) or None
        options["password"] = unquote(password) or None
    items = [item for item in hostlist.split(",") if item.strip()]
    hosts = tuple(_host(url, item, DEFAULT_SENTINEL_PORT) for item in items)
    if not hosts:
        raise ValueError(f"store URL {url!r}: a sentinel URL needs a host, like {_SENTINEL_EG}")
    service, db = _service_and_db(url, parts.path)
    return SentinelUrl(hosts, service, db, options)


_SENTINEL_EG = "redis+sentinel://s1:26379,s2:26379/mymaster/0"


def _service_and_db(url: str, path: str) -> tuple[str, int]:
    inner = path.removeprefix("/").removesuffix("/")
    segments = inner.split("/") if inner else []
    if not segments or not segments[0]:
        raise ValueError(
            f"store URL {url!r}: a sentinel URL needs the service name (sentinel monitor "
            f"<name>), like {_SENTINEL_EG}"
        )
    if len(segments) > 2:
        raise ValueError(f"store URL {url!r}: the path is /<service>[/<db>], like {_SENTINEL_EG}")
    db_text = segments[1] if len(segments) == 2 else "0"
    if not (db_text.isascii() and db_text.isdigit()) or int(db_text) >= 1 << 31:
        raise ValueError(f"store URL {url!r}: bad database {db_text!r} (a number: /0, /1, ...)")
    return unquote(segments[0]), int(db_text)
