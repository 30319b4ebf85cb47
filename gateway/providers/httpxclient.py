"""The httpx implementation of the upstream seam (``seam.UpstreamClient``).

Used for a provider with ``transport: httpx`` and, automatically, for one whose host
a proxy environment variable covers (``config.upstream_routes`` decides, and passes
the proxy in: httpx itself reads no environment, ``trust_env=False``). Redirects are
never followed, cookies never kept (a provider's cookie must not travel from one
gateway key's request to another's), HTTP/2 is offered only if ``h2`` is installed.

It answers with the same ``UpstreamResponse`` interface and the same httpx exception
types as the lean pool: read and write failures (``ReadError``, ``WriteError``)
become ``RemoteProtocolError`` and a proxy's refusal ``ConnectError`` (the request
never reached the provider), so ``classify`` sees one vocabulary.

Known gap: h11 keeps bytes that arrive after a complete answer and reads them as the
next request's answer, so an upstream that sends an unsolicited second answer in the
same read can desynchronise a pooled httpx connection (the lean pool closes such a
connection). 1xx answers are skipped correctly.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import ssl
from collections.abc import AsyncIterator, Iterator
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from gateway.providers.seam import FINISH_BYTES, ClientSettings, UpstreamRequest

HTTP2 = importlib.util.find_spec("h2") is not None


@contextlib.contextmanager
def same_errors() -> Iterator[None]:
    """httpx's errors in the lean pool's vocabulary."""
    try:
        yield
    except httpx.ProxyError as exc:
        raise httpx.ConnectError(f"the proxy refused the connection: {exc}") from exc
    except (httpx.ReadError, httpx.WriteError, httpx.CloseError) as exc:
        raise httpx.RemoteProtocolError(f"connection failed: {exc!r}") from exc


class HttpxResponse:
    def __init__(
        self, response: httpx.Response, settings: ClientSettings, read_s: float | None = None
    ) -> None:
        self.status_code = response.status_code
        self.headers = {k.lower(): v for k, v in response.headers.items()}
        self.content = b""
        self._response = response
        self._raw = response.aiter_raw()
        self._limit = settings.max_response_bytes
        self._read_s = read_s

    async def aread(self) -> bytes:
        parts: list[bytes] = []
        size = 0
        with same_errors():
            async for chunk in self._raw:
                size += len(chunk)
                if size > self._limit:
                    await self._response.aclose()
                    raise httpx.RemoteProtocolError(f"response body over {self._limit} bytes")
                parts.append(chunk)
        self.content = b"".join(parts)
        await self._response.aclose()
        return self.content

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body's reads, each within ``read_s`` of the one before (httpx's own read
        timeout would bound the wait for the headers too, which is the caller's)."""
        with same_errors():
            while True:
                try:
                    async with asyncio.timeout(self._read_s):
                        chunk = await anext(self._raw)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise httpx.ReadTimeout("the upstream went silent") from None
                yield chunk

    def take_buffered(self) -> bytes:
        return b""  # httpx hands out nothing it has not been asked for

    async def finish(self, limit_s: float) -> None:
        left = FINISH_BYTES
        try:
            with contextlib.suppress(httpx.HTTPError, TimeoutError):
                async with asyncio.timeout(limit_s):
                    async for chunk in self._raw:
                        left -= len(chunk)
                        if left < 0:
                            break
        finally:
            await self._response.aclose()

    async def stop(self, limit_s: float) -> tuple[bytes, bool]:
        await self._response.aclose()  # httpx cannot half-close a connection
        return b"", False

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpxClient:
    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        proxy: str | None = None,
    ) -> None:
        self.settings = s = settings or ClientSettings()
        self._client = httpx.AsyncClient(
            verify=ssl_context or True,
            proxy=proxy,
            http2=HTTP2,
            trust_env=False,
            follow_redirects=False,
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
            limits=httpx.Limits(
                max_connections=s.max_connections,
                max_keepalive_connections=s.max_connections,
                keepalive_expiry=s.keepalive_expiry_s,
            ),
        )

    def _timeout(self, read_s: float | None) -> httpx.Timeout:
        s = self.settings
        return httpx.Timeout(
            connect=s.connect_timeout_s, read=read_s, write=read_s, pool=s.pool_timeout_s
        )

    async def send(self, request: UpstreamRequest) -> HttpxResponse:
        client = self._client
        built = client.build_request(
            "POST",
            request.url,
            headers=request.headers,
            content=request.body,
            timeout=self._timeout(None),
        )
        with same_errors():
            response = await client.send(built, stream=True)
        answer = HttpxResponse(response, self.settings, request.read_s)
        try:
            self._check_head(response)
            if not request.stream:
                await answer.aread()
        except BaseException:
            await response.aclose()
            raise
        return answer

    def _check_head(self, response: httpx.Response) -> None:
        size = sum(len(k) + len(v) + 4 for k, v in response.headers.raw)
        limit = self.settings.max_response_header_bytes
        if size > limit:
            raise httpx.RemoteProtocolError(f"response headers exceed {limit} bytes")

    def idle_connections(self) -> int:
        """Pooled connections httpcore holds idle (for tests and diagnostics)."""
        pool = getattr(self._client._transport, "_pool", None)
        connections = getattr(pool, "connections", ())
        return sum(1 for c in connections if c.is_idle())

    async def aclose(self) -> None:
        await self._client.aclose()
