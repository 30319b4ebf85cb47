"""The upstream transport seam: one request in, one response out.

Providers never hold a concrete HTTP client. ``Transport`` (``transport.py``) sends
their requests through an ``UpstreamClient``, whose shape is httpx's
``AsyncBaseTransport.handle_async_request`` (``send`` one request, get one response,
``aclose`` at shutdown), and reads an ``UpstreamResponse``. Each provider has its own
client (its own connection limit and TLS context). Two implementations, chosen per
provider by ``transport: fast | httpx`` (httpx automatically behind a proxy):

* ``fasthttp.FastPool``: a lean HTTP/1.1 keep-alive pool (an asyncio Protocol with
  httptools' C parser). It stays on the request path because httpx's transport stack
  (httpcore, anyio, the pure-Python h11 parser, cookies) cost more CPU per call than
  the rest of the gateway together.
* ``httpxclient.HttpxClient``: ``httpx.AsyncClient``, for proxies (``HTTPS_PROXY``
  and friends), and HTTP/2 where the ``h2`` package is installed.

The contract both keep (``tests/transport`` runs the same scenarios over both):

* Only httpx's exception types are raised: ``ConnectError``/``ConnectTimeout``
  (nothing was sent), ``PoolTimeout``, ``ReadTimeout``, ``RemoteProtocolError`` (a
  malformed or oversized answer, a cut; the connection is closed) and
  ``LocalProtocolError`` (a header holding CR, LF or NUL: nothing was sent).
  ``classify.classify_transport`` turns them into ``UpstreamError`` once.
* A request is sent at most once: a failure on a reused connection surfaces as an
  error, for the gateway's retry policy and retry budget to decide.
* Any number of 1xx answers before the final one are skipped; redirects are never
  followed (a 3xx is the answer); a body ends by Content-Length, by chunked
  encoding (extensions and trailers allowed) or by the server closing.
* A connection goes back to the pool only after its whole message arrived, with no
  byte pending, unless the server said ``Connection: close``; a pooled connection is
  not reused once it was idle longer than ``keepalive_expiry_s``, or its peer closed.
* What an upstream can make us hold is bounded: response headers
  (``max_response_header_bytes``), a body read whole (``max_response_bytes``).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

# What ``finish`` reads at most, past the content, to keep the connection.
FINISH_BYTES = 8 * 1024
# What ``stop`` collects at most from an upstream that was told to stop.
STOP_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """One provider's client: limits and timeouts fixed at start."""

    max_connections: int = 200
    connect_timeout_s: float | None = 5.0
    pool_timeout_s: float | None = 5.0
    keepalive_expiry_s: float = 15.0
    max_response_header_bytes: int = 64 * 1024
    max_response_bytes: int = 32 * 1024 * 1024


@dataclass(slots=True)
class UpstreamRequest:
    """A POST: ``read_s`` bounds each wait for the answer's next bytes (None: the
    caller's deadline alone); ``stream`` returns once the headers arrived."""

    url: httpx.URL
    headers: list[tuple[bytes, bytes]]
    body: bytes
    stream: bool = False
    read_s: float | None = None


class UpstreamResponse(Protocol):
    """An answer whose headers arrived; its body is read (or streamed) once."""

    status_code: int
    headers: dict[str, str]  # lower-case names
    content: bytes  # the whole body, once read (always, when not streamed)

    async def aread(self) -> bytes:
        """The rest of the body (at most ``max_response_bytes``)."""
        ...

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives (the transfer coding removed)."""
        ...

    def take_buffered(self) -> bytes:
        """Body bytes that arrived but were not read yet, without waiting."""
        ...

    async def finish(self, limit_s: float) -> None:
        """The caller has all the content it wants: wait at most ``limit_s`` (and
        ``FINISH_BYTES``) for the message's end, then release the connection (or
        close it if the end did not come)."""
        ...

    async def stop(self, limit_s: float) -> tuple[bytes, bool]:
        """We want no more of a body still coming: tell the upstream (on plain HTTP by
        closing our sending side, which a server takes as the client going away), then
        collect what it had already sent until it closes, at most ``limit_s`` and
        ``STOP_BYTES``. Returns those bytes and whether the upstream ended the body
        itself (so nothing it sent is missing); the connection is closed either way."""
        ...

    async def aclose(self) -> None:
        """Done: the connection is pooled if the whole message arrived, else closed."""
        ...


class UpstreamClient(Protocol):
    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


class Upstreams:
    """Every provider's client, by provider name; closed together at shutdown."""

    def __init__(self, clients: Mapping[str, UpstreamClient]) -> None:
        self._clients = dict(clients)

    def __getitem__(self, provider: str) -> UpstreamClient:
        return self._clients[provider]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """One per provider, made at start: the system's CAs, or only ``ca_file``'s."""
    return ssl.create_default_context(cafile=ca_file)


def check_header_block(block: bytes, end: int, lines: int) -> None:
    """``block[:end]`` must hold exactly ``lines`` CRLF line ends and no NUL: a CR,
    LF or NUL inside a name or value would let it forge headers (or a request)."""
    if (
        block.count(b"\n", 0, end) != lines
        or block.count(b"\r", 0, end) != lines
        or block.find(b"\0", 0, end) >= 0
    ):
        raise httpx.LocalProtocolError("a request header holds CR, LF or NUL: not sent")
