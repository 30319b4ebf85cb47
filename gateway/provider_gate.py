"""A provider's admission: how many of its calls run at once, who goes next, and when.

Each provider has one gate (per replica). An upstream attempt takes a slot before it
is reserved and sent, and gives it back when it is settled (a stream when it ends, a
plain answer abandoned at its deadline when its drain finishes: the provider works
until then). Three things decide whether a call may go now:

- **Concurrency**: at most ``max_inflight`` (default: the provider's
  ``max_connections``) calls at once. Calls beyond it wait in a fair queue: one FIFO
  per gateway key, served round-robin, so one key with a thousand waiting calls
  delays another key's next call by at most one call per other waiting key. A call
  that waits longer than ``queue_timeout_s`` is answered 503 ``provider_busy``; the
  wait counts against the request's own deadline.
- **Slow start**: when a breaker of one of the provider's models closes after an
  outage, the gate admits ``SLOW_START_DIVISOR``-th of its concurrency and one more
  call per call that succeeds (doubling per round trip), so the backlog of every
  waiting workflow does not land on the recovered provider at once.
- **Pacing** (``gateway.pacing``): when the provider's own rate-limit headers say its
  quota is spent, calls wait for its reset instead of running into 429s.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.pacing import Pacing
from gateway.telemetry import logging as log
from gateway.telemetry import metrics
from policies.errors import UpstreamError

SLOW_START_DIVISOR = 16


@dataclass(slots=True)
class _Waiter:
    tokens: int
    future: asyncio.Future[Slot]


class Slot:
    """One admitted call; ``release`` it once it is over (again: no effect)."""

    __slots__ = ("done", "gate", "waited_s")

    def __init__(self, gate: ProviderGate | None, *, done: bool = False) -> None:
        self.gate = gate
        self.done = done
        self.waited_s = 0.0

    def release(self, ok: bool = True) -> None:
        if not self.done and self.gate is not None:
            self.done = True
            self.gate.release(ok)


NO_SLOT = Slot(None, done=True)


class ProviderGate:
    def __init__(
        self,
        provider: str,
        max_inflight: int,
        queue_timeout_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        pacing: Pacing | None = None,
    ) -> None:
        self.provider = provider
        self.cap = max_inflight
        self.queue_timeout_s = queue_timeout_s
        self.window = max_inflight  # lowered by slow start
        self.active = 0
        self.pacing = pacing or Pacing(clock)
        self._clock = clock
        self._queues: dict[str, deque[_Waiter]] = {}
        self._waiting = 0
        self._timer: asyncio.TimerHandle | None = None
        self._wait_metric = metrics.child(metrics.PROVIDER_QUEUE_WAIT, provider)

    # -- admission ------------------------------------------------------------
    async def acquire(self, key: str, tokens: int) -> Slot:
        """A slot for a call of ``key`` estimated at ``tokens``: at once when one is
        free and nobody waits, else after a fair wait (503 ``provider_busy`` past
        the queue timeout)."""
        if not self._queues and self._may_send(tokens):
            self._wait_metric.observe(0.0)
            return self._grant(tokens)
        future: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(tokens, future)
        self._queues.setdefault(key, deque()).append(waiter)
        self._depth(+1)
        self._pump()  # pacing may only need a timer
        started = self._clock()
        try:
            async with asyncio.timeout(self.queue_timeout_s) as limit:
                slot = await asyncio.shield(future)
        except TimeoutError:
            self._abandon(key, waiter)
            if not limit.expired():
                raise
            raise self._busy(started) from None
        except BaseException:
            self._abandon(key, waiter)
            raise
        slot.waited_s = self._clock() - started
        self._wait_metric.observe(slot.waited_s)
        return slot

    def _abandon(self, key: str, waiter: _Waiter) -> None:
        """A waiter stopped waiting (timed out, cancelled): out of its queue; a slot
        granted to it in the meantime goes back."""
        queue = self._queues.get(key)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            self._depth(-1)
            if not queue:
                del self._queues[key]
        future = waiter.future
        if future.done() and not future.cancelled():
            future.result().release(ok=False)
        else:
            future.cancel()
        self._pump()

    def _busy(self, started: float) -> UpstreamError:
        """The queue timed out: the next candidate is tried (nothing was sent, and
        a busy provider is not an unhealthy one); the last one's answer is 503
        ``provider_busy``."""
        waited = self._clock() - started
        self._wait_metric.observe(waited)
        log.event("provider_busy", provider=self.provider, waited_s=round(waited, 3))
        return UpstreamError(
            f"the provider {self.provider} is at its concurrency limit ({self.cap} calls); "
            f"waited {waited:.1f} s in its queue (queue_timeout_s {self.queue_timeout_s:g})",
            kind="provider_busy",
            retryable=True,
            retry_here=False,
            reached=False,
            retry_after_s=max(1.0, float(round(self.queue_timeout_s))),
        )

    def _may_send(self, tokens: int) -> bool:
        return self.active < self.window and self.pacing.wait_s(tokens) <= 0

    def _grant(self, tokens: int) -> Slot:
        self.active += 1
        self.pacing.take(tokens)
        return Slot(self)

    def _next(self) -> tuple[str, _Waiter] | None:
        """The head of the next key's queue in round-robin order."""
        for key, queue in self._queues.items():
            return key, queue[0]
        return None

    def _pump(self) -> None:
        """Grant slots to waiters in round-robin order while they may go."""
        while (head := self._next()) is not None:
            key, waiter = head
            if waiter.future.done():
                self._pop(key)
                continue
            wait_s = self.pacing.wait_s(waiter.tokens)
            if self.active >= self.window:
                return
            if wait_s > 0:
                self._wake_in(wait_s)
                return
            self._pop(key)
            waiter.future.set_result(self._grant(waiter.tokens))

    def _pop(self, key: str) -> None:
        """Take the head of ``key``'s queue; the key goes to the back of the round."""
        queue = self._queues.pop(key)
        queue.popleft()
        self._depth(-1)
        if queue:
            self._queues[key] = queue

    def _wake_in(self, seconds: float) -> None:
        if self._timer is not None:
            return
        metrics.child(metrics.PROVIDER_PACED, self.provider).inc()

        def wake() -> None:
            self._timer = None
            self._pump()

        self._timer = asyncio.get_running_loop().call_later(seconds, wake)

    def _depth(self, change: int) -> None:
        self._waiting += change
        metrics.child(metrics.PROVIDER_QUEUE_DEPTH, self.provider).set(self._waiting)

    # -- what calls report ----------------------------------------------------
    def release(self, ok: bool) -> None:
        self.active -= 1
        if ok and self.window < self.cap:
            self.window += 1
        self._pump()

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """An answer's headers: the provider's quota (``pacing``)."""
        if self.pacing.observe(status, headers, max(0, self.active - 1)):
            self._pump()

    def slow_start(self) -> None:
        """A breaker of this provider closed: ramp its concurrency up again."""
        self.window = max(1, self.cap // SLOW_START_DIVISOR)
        log.event("slow_start", provider=self.provider, window=self.window, cap=self.cap)
