"""Store URLs of Redis Cluster: ``redis+cluster://[user[:password]@]host:port[,host:port...]``
(``rediss+cluster://`` for TLS). The hosts are startup nodes: any reachable one is
enough to discover the cluster (the client learns the rest from ``CLUSTER SLOTS``).
A cluster has only database 0, so a path other than ``/`` or ``/0`` is refused.
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
    hosts = tuple(_host(url, item) for item in hostlist.split(",") if item.strip())
    if not hosts:
        raise ValueError(
            f"store URL {url!r}: a cluster URL needs a host, like redis+cluster://h1:6379,h2:6379"
        )
    return ClusterUrl(hosts, options)


def _host(url: str, item: str) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [v6 address]:port
        host, _, rest = item[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"store URL {url!r}: bad port in {item!r}") from None
    if not host or not 0 < port < 65536:
        raise ValueError(f"store URL {url!r}: bad host or port in {item!r}")
    return host, port
