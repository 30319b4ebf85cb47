"""The one place that talks HTTP to an upstream and turns httpx's errors into ours."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import httpx

from accounting.usage import Usage
from gateway.providers.classify import classify_response, classify_transport, stream_broken
from policies.errors import UpstreamError


class Transport:
    """Sends one request over the shared pool with the provider's timeouts."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        provider: str,
        *,
        connect_timeout_s: float,
        idle_timeout_s: float,
        first_token_timeout_s: float,
    ) -> None:
        self.client = client
        self.provider = provider
        self.first_token_timeout_s = first_token_timeout_s
        self._stream_timeout = httpx.Timeout(
            connect=connect_timeout_s, read=idle_timeout_s, write=30.0, pool=connect_timeout_s
        )
        self._plain_timeout = httpx.Timeout(
            connect=connect_timeout_s, read=None, write=30.0, pool=connect_timeout_s
        )

    async def post(
        self, url: str, headers: Mapping[str, str], content: bytes, *, stream: bool
    ) -> httpx.Response:
        """POST and return once headers arrived (body unread when ``stream``).

        Transport failures become UpstreamError; HTTP statuses are the caller's to judge.
        """
        timeout = self._stream_timeout if stream else self._plain_timeout
        request = self.client.build_request(
            "POST", url, headers=headers, content=content, timeout=timeout
        )
        try:
            if stream:
                async with asyncio.timeout(self.first_token_timeout_s):
                    return await self.client.send(request, stream=True)
            return await self.client.send(request)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise classify_transport(exc, self.provider) from None

    async def read_error(self, response: httpx.Response) -> bytes:
        try:
            return await response.aread()
        except httpx.HTTPError:
            return b""
        finally:
            await response.aclose()

    def fail(
        self,
        response: httpx.Response,
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

    async def chunks(self, response: httpx.Response) -> AsyncIterator[bytes]:
        """The raw body of a streamed response; a cut or silence -> UpstreamError."""
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        except httpx.TimeoutException:
            raise stream_broken(self.provider, "went silent (idle timeout)") from None
        except httpx.HTTPError as exc:
            raise stream_broken(self.provider, f"broke off ({type(exc).__name__})") from None
