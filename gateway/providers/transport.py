"""The one place that talks HTTP to an upstream and turns transport errors into ours."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import httpx

from accounting.usage import Usage
from gateway.providers.base import StreamState
from gateway.providers.classify import classify_response, classify_transport, stream_broken
from gateway.providers.fasthttp import Response, UpstreamPool
from policies.errors import UpstreamError


class Transport:
    """Sends one provider's requests over the shared pool with its timeouts."""

    def __init__(
        self,
        pool: UpstreamPool,
        provider: str,
        *,
        connect_timeout_s: float,
        idle_timeout_s: float,
        first_token_timeout_s: float,
    ) -> None:
        self.pool = pool
        self.provider = provider
        self.connect_timeout_s = connect_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.first_token_timeout_s = first_token_timeout_s
        self._urls: dict[str, httpx.URL] = {}

    def _url(self, url: str) -> httpx.URL:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    async def post(
        self, url: str, headers: Mapping[str, str], content: bytes, *, stream: bool
    ) -> Response:
        """POST and return once headers arrived (the body too unless ``stream``).

        Transport failures become UpstreamError; HTTP statuses are the caller's to judge.
        A stream's read timeout is the idle timeout between chunks; a plain request's
        wait is bounded by the request's deadline alone.
        """
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        try:
            if stream:
                async with asyncio.timeout(self.first_token_timeout_s):
                    return await self.pool.post(
                        self._url(url),
                        raw,
                        content,
                        connect_s=self.connect_timeout_s,
                        read_s=self.idle_timeout_s,
                        pool_s=self.connect_timeout_s,
                        stream=True,
                    )
            return await self.pool.post(
                self._url(url),
                raw,
                content,
                connect_s=self.connect_timeout_s,
                read_s=None,
                pool_s=self.connect_timeout_s,
            )
        except (httpx.HTTPError, TimeoutError) as exc:
            raise classify_transport(exc, self.provider) from None

    async def read_error(self, response: Response) -> bytes:
        try:
            return await response.aread()
        except httpx.HTTPError:
            return b""
        finally:
            await response.aclose()

    def fail(
        self,
        response: Response,
        body: bytes,
        *,
        context_window: bool = False,
        usage: Usage | None = None,
    ) -> UpstreamError:
        return classify_response(
            response.status_code,
            response.headers,
            body,
            provider=self.provider,
            context_window=context_window,
            usage=usage,
        )

    async def chunks(self, response: Response, state: StreamState) -> AsyncIterator[bytes]:
        """The raw body of a streamed response; a cut or silence -> UpstreamError.
        ``state.ended_by_upstream`` records whether the upstream ended it itself."""
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        except httpx.TimeoutException:
            raise stream_broken(self.provider, "went silent (idle timeout)") from None
        except httpx.HTTPError as exc:
            state.ended_by_upstream = True
            raise stream_broken(self.provider, f"broke off ({type(exc).__name__})") from None
        state.ended_by_upstream = True
