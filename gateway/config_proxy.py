"""How each provider's requests leave the gateway: its transport, and the proxy the
environment names for its host (read here, with ``gateway.config``, and nowhere else)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

from gateway.config_schema import FileConfig


def header_safe(value: str) -> bool:
    """Whether ``value`` can go in an HTTP header (no CR, LF or NUL)."""
    return not ("\r" in value or "\n" in value or "\0" in value)


class UpstreamRoute(NamedTuple):
    """How one provider's requests leave: its transport and proxy (if any)."""

    transport: Literal["fast", "httpx"]
    proxy: str | None = None  # may hold credentials: log ``proxy_shown``

    @property
    def proxy_shown(self) -> str | None:
        if self.proxy is None:
            return None
        parts = urlsplit(self.proxy)
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def upstream_routes(
    config: FileConfig, environ: Mapping[str, str] | None = None
) -> dict[str, UpstreamRoute]:
    """Each provider's effective transport: its ``transport`` key, except that a
    proxy variable (``https_proxy``/``HTTPS_PROXY``, ``http_proxy``, ``all_proxy``;
    lower case first) covering its host, and not excepted by ``NO_PROXY``, means httpx
    through that proxy (the lean pool speaks no proxy protocol)."""
    env = os.environ if environ is None else environ
    routes = {}
    for name, p in config.providers.items():
        url = urlsplit(p.base_url)
        proxy = _env_proxy(url.scheme, url.hostname or "", url.port, env)
        routes[name] = UpstreamRoute("httpx", proxy) if proxy else UpstreamRoute(p.transport)
    return routes


def _env_var(env: Mapping[str, str], name: str) -> str:
    return env.get(name.lower()) or env.get(name.upper()) or ""


def _env_proxy(scheme: str, host: str, port: int | None, env: Mapping[str, str]) -> str | None:
    if _no_proxy(host, port, _env_var(env, "no_proxy")):
        return None
    proxy = _env_var(env, f"{scheme}_proxy") or _env_var(env, "all_proxy")
    if not proxy.strip():
        return None
    proxy = proxy.strip()
    return proxy if "://" in proxy else f"http://{proxy}"


def _no_proxy(host: str, port: int | None, no_proxy: str) -> bool:
    """``NO_PROXY``: ``*``, host names (a leading dot or ``*.`` optional: the domain
    and its subdomains), ``host:port``, IP addresses and CIDR ranges."""
    host = host.lower().strip("[]")
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if entry == "*":
            return True
        if not entry:
            continue
        if _in_network(host, entry):
            return True
        name, _, entry_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
        if entry_port and port is not None and entry_port != str(port):
            continue
        name = name.removeprefix("*").removeprefix(".").strip("[]")
        if host == name or host.endswith("." + name):
            return True
    return False


def _has_port(entry: str) -> bool:
    head, sep, tail = entry.rpartition(":")
    return bool(sep) and tail.isdigit() and (head.endswith("]") or ":" not in head)


def _in_network(host: str, entry: str) -> bool:
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:
        return False
