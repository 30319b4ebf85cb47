import os
from collections.abc import Iterator

import pytest

from tests.support.redis_server import RedisServer

os.environ.setdefault(
    "TIKTOKEN_CACHE_DIR",
    os.path.normpath(
        os.path.join(
            os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "shared", "tiktoken"
        )
    ),
)


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free port, of this test alone (it may stop, pause
    or restart it); never the machine's own Redis on 6379."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()
