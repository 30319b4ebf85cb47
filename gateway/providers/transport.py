"""The one place that talks HTTP to an upstream and turns transport errors into ours.

``Transport`` is one provider's view of the upstream seam (``seam.py``): it sends
over that provider's ``UpstreamClient`` (the lean pool or httpx, see ``open_client``)
with the provider's timeouts, and classifies what goes wrong once.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Literal

import httpx

from accounting.usage import Usage
from gateway import sse
from gateway.providers.base import StreamState, UpstreamCall
from gateway.providers.classify import classify_response, classify_transport, stream_broken
from gateway.providers.fasthttp import FastPool
from gateway.providers.httpxclient import HttpxClient
from gateway.providers.seam import (
    ClientSettings,
    UpstreamClient,
    UpstreamRequest,
    UpstreamResponse,
    tls_context,
)
from gateway.scrub import NOTHING, Scrubber, scrub_bytes
from policies.errors import UpstreamError

# How long a stream whose content is complete waits for the rest of its message
# (the chunked terminator after ``[DONE]``) to keep its connection.
FINISH_S = 0.1
# How long a stream we cut waits for the upstream to acknowledge the stop.
STOP_S = 0.5


def open_client(
    kind: Literal["fast", "httpx"],
    settings: ClientSettings,
    *,
    base_url: str,
    proxy: str | None = None,
    ca_file: str | None = None,
) -> UpstreamClient:
    """One provider's client, with its TLS context made now (once)."""
    tls: ssl.SSLContext | None = None
    if base_url.startswith("https:") or proxy is not None or ca_file is not None:
        tls = tls_context(ca_file)
    if kind == "httpx":
        return HttpxClient(settings, ssl_context=tls, proxy=proxy)
    return FastPool(settings, ssl_context=tls)


class Transport:
    """Sends one provider's requests over its client with its timeouts."""

    def __init__(
        self,
        client: UpstreamClient,
        provider: str,
        *,
        idle_timeout_s: float,
        first_token_timeout_s: float,
        max_event_bytes: int = sse.MAX_EVENT_BYTES,
        scrubber: Scrubber = NOTHING,
        on_answer: Callable[[int, Mapping[str, str]], None] | None = None,
    ) -> None:
        self.client = client
        self.on_answer = on_answer  # every answer's status and headers (pacing)
        self.provider = provider
        self.scrub = scrubber.text  # upstream words that reach anyone pass through this
        self.idle_timeout_s = idle_timeout_s
        self.first_token_timeout_s = first_token_timeout_s
        self.max_event_bytes = max_event_bytes
        self._urls: dict[str, httpx.URL] = {}

    def _url(self, url: str) -> httpx.URL:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    def decoder(self) -> sse.Decoder:
        """An SSE decoder with this provider's event size limit."""
        return sse.Decoder(self.max_event_bytes)

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        content: bytes,
        *,
        stream: bool,
        call: UpstreamCall | None = None,
    ) -> UpstreamResponse:
        """POST and return once headers arrived (the body too unless ``stream``).

        Transport failures become UpstreamError; HTTP statuses are the caller's to judge.
        A stream's headers must come within the call's first-token limit (else the
        provider's) and its read timeout is the idle timeout between chunks; a plain
        request's wait is bounded by its caller.
        """
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        try:
            if stream:
                first = (call and call.first_token_s) or self.first_token_timeout_s
                idle = (call and call.idle_s) or self.idle_timeout_s
                request = UpstreamRequest(self._url(url), raw, content, True, idle)
                async with asyncio.timeout(first):
                    response = await self.client.send(request)
            else:
                response = await self.client.send(UpstreamRequest(self._url(url), raw, content))
        except httpx.LocalProtocolError:
            raise UpstreamError(
                f"a header for {self.provider} holds CR, LF or NUL: not sent",
                kind="server_error",
                reached=False,
            ) from None
        except (httpx.HTTPError, TimeoutError) as exc:
            raise classify_transport(exc, self.provider) from None
        if self.on_answer is not None:
            self.on_answer(response.status_code, response.headers)
        return response

    async def close(self, response: UpstreamResponse, *, complete: bool) -> None:
        """Done with a stream: when its content is ``complete``, wait a moment for the
        rest of the message so its connection is kept; otherwise close it now."""
        if complete:
            await response.finish(FINISH_S)
        else:
            await response.aclose()

    async def end_stream(
        self,
        response: UpstreamResponse,
        decoder: sse.Decoder,
        state: StreamState,
        absorb: Callable[[sse.Event], None],
        *,
        stop: bool,
    ) -> None:
        """Close a stream; what it already sent us still counts (``absorb`` sees it):
        the events that arrived but were not read, and when we ``stop`` one that still
        generates, what it sends until it stopped (``stop``). A complete one waits a
        moment for its message's end, to keep the connection."""
        for event in self.leftover(response, decoder):
            absorb(event)
        if stop and not state.done:
            for event in await self.stop(response, decoder, state):
                absorb(event)
            return
        await self.close(response, complete=state.done)

    async def stop(
        self, response: UpstreamResponse, decoder: sse.Decoder, state: StreamState
    ) -> list[sse.Event]:
        """Cut a stream that still generates: tell the upstream to stop (a half-close
        on plain HTTP) and collect the events it had sent until it stopped (``STOP_S``
        at most), so they are counted. Even an upstream that ends the body once told
        may have generated tokens it never sent (between the stop and its noticing
        it), which it bills: a stream we cut is never taken as complete, and the
        settlement adds the cut allowance (``state.ended_by_upstream`` stays as it
        was)."""
        data, _ended = await response.stop(STOP_S)
        try:
            return decoder.feed(data)
        except sse.EventTooLarge:
            return []  # cut for its size: nothing of it counts

    async def read_error(self, response: UpstreamResponse) -> bytes:
        try:
            return await response.aread()
        except httpx.HTTPError:
            return b""
        finally:
            await response.aclose()

    def fail(
        self,
        response: UpstreamResponse,
        body: bytes,
        *,
        context_window: bool = False,
        usage: Usage | None = None,
    ) -> UpstreamError:
        return classify_response(
            response.status_code,
            response.headers,
            scrub_bytes(self.scrub, body),
            provider=self.provider,
            context_window=context_window,
            usage=usage,
        )

    async def events(
        self, response: UpstreamResponse, state: StreamState, decoder: sse.Decoder
    ) -> AsyncIterator[list[sse.Event]]:
        """The SSE events of each read of a streamed response; a cut, a silence or an
        event over the provider's ``max_event_bytes`` -> UpstreamError.
        ``state.ended_by_upstream`` records whether the upstream ended it itself."""
        try:
            async for chunk in response.aiter_raw():
                yield decoder.feed(chunk)
        except httpx.TimeoutException:
            raise stream_broken(self.provider, "went silent (idle timeout)", silent=True) from None
        except httpx.HTTPError as exc:
            state.ended_by_upstream = True
            raise stream_broken(self.provider, f"broke off ({type(exc).__name__})") from None
        except sse.EventTooLarge as exc:
            raise stream_broken(self.provider, f"sent an oversized event ({exc})") from None
        state.ended_by_upstream = True

    def leftover(self, response: UpstreamResponse, decoder: sse.Decoder) -> list[sse.Event]:
        """The events in what arrived but was not read yet (a stream being closed)."""
        try:
            return decoder.feed(response.take_buffered())
        except sse.EventTooLarge:
            return []  # cut for its size: nothing of it counts
