"""Exact token counting off the event loop, on a small pool of its own.

Counting is pure CPU. Run on asyncio's default executor it had no bound: six 8 MB
prompts stalled everyone's near-cap requests for 25 s. Here it gets its own threads
and a cap on waiting work; a count that would exceed the cap, or a body too large to be
worth counting, is not made: the caller uses its byte bound instead (every byte-level
BPE token is at least one byte), which is always on the safe side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

WORKERS = 2
MAX_PENDING = 16
MAX_COUNTED_BYTES = 1024 * 1024  # larger prompts are bounded, not counted


class Counter:
    def __init__(self, workers: int = WORKERS, max_pending: int = MAX_PENDING) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spendgate-count")
        self._max_pending = max_pending
        self.pending = 0

    async def run(self, fn: Callable[[], T]) -> T | None:
        """``fn()`` on the counting pool, or None when too much is already waiting."""
        if self.pending >= self._max_pending:
            return None
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn)
        finally:
            self.pending -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
