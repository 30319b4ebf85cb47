from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.providers.seam import ClientSettings, UpstreamClient, UpstreamRequest, UpstreamResponse
from gateway.providers.transport import open_client
from tests.transport.rawserver import RawServer

KINDS = ["fast", "httpx"]
MakeClient = Callable[..., UpstreamClient]


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    async with RawServer() as srv:
        yield srv


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_client(kind: str) -> AsyncIterator[MakeClient]:
    """``make_client(base_url, **settings)``: a client of this test's kind."""
    clients: list[UpstreamClient] = []

    def make(base_url: str, ca_file: str | None = None, **settings: Any) -> UpstreamClient:
        client = open_client(
            kind,  # type: ignore[arg-type]
            ClientSettings(**settings),
            base_url=base_url,
            ca_file=ca_file,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def post(
    client: UpstreamClient,
    url: str,
    *,
    path: str = "/v1/chat/completions",
    stream: bool = False,
    headers: list[tuple[bytes, bytes]] | None = None,
    read_s: float = 2.0,
) -> UpstreamResponse:
    """POST a small JSON body; a test's wait for the answer is bounded by ``read_s``."""
    request = UpstreamRequest(
        httpx.URL(url + path),
        headers if headers is not None else [(b"content-type", b"application/json")],
        b'{"model": "m"}',
        stream,
        read_s,
    )
    return await client.send(request)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A self-signed certificate for 127.0.0.1 (cert, key), made with openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    yield cert, key
