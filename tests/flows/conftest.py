from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.mock_provider import create_app as create_mock
from tests.support.gateway import Gateway, base_config, run_gateway
from tests.support.servers import serve_app


@pytest.fixture(scope="session")
def mock_url() -> Iterator[str]:
    with serve_app(create_mock()) as url:
        yield url


@pytest.fixture
def mock(mock_url: str) -> str:
    httpx.post(f"{mock_url}/_mock/reset", timeout=10).raise_for_status()
    return mock_url


@pytest.fixture
def config(mock: str, tmp_path: Path) -> dict[str, Any]:
    return base_config(mock, f"sqlite:///{tmp_path / 'state.db'}")


@pytest.fixture
def gateway(config: dict[str, Any], mock: str) -> Iterator[Gateway]:
    with run_gateway(config, mock) as gw:
        yield gw
