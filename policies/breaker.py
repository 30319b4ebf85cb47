"""One circuit breaker per model deployment: pybreaker, made safe for asyncio.

pybreaker is driven with ``with breaker.calling(): await ...``. What it does not do,
this wrapper adds:

- only breaker-counting errors count (``UpstreamError.breaker_failure``); a client
  error or the caller going away leaves the breaker exactly as it was;
- half-open admits exactly ONE trial request at a time (a permit);
- the clock is injected (tests move time without sleeping);
- state changes are reported to a listener (logs, metrics).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import TYPE_CHECKING

from policies.errors import UpstreamError


def _import_pybreaker() -> ModuleType:
    """pybreaker imports redis at import time for a breaker storage we never use
    (breaker state stays in process); that import alone costs ~15 MB of RSS. Import
    pybreaker with redis hidden, unless something already loaded redis."""
    if "redis" in sys.modules or "pybreaker" in sys.modules:
        return importlib.import_module("pybreaker")
    sys.modules["redis"] = None  # type: ignore[assignment]
    try:
        return importlib.import_module("pybreaker")
    finally:
        del sys.modules["redis"]


if TYPE_CHECKING:
    import pybreaker
else:
    pybreaker = _import_pybreaker()

STATE_CODES = {"closed": 0, "half-open": 1, "open": 2}


class BreakerOpen(Exception):
    def __init__(self, model: str, retry_after_s: float) -> None:
        super().__init__(f"{model}: circuit breaker open")
        self.model = model
        self.retry_after_s = retry_after_s


class _ClockStorage(pybreaker.CircuitMemoryStorage):
    """Memory storage whose ``opened_at`` follows an injected clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(pybreaker.STATE_CLOSED)
        self._clock = clock
        self._opened_clock: float | None = None

    @property
    def opened_at(self) -> datetime | None:
        if self._opened_clock is None:
            return None
        return datetime.now(UTC) - timedelta(seconds=self._clock() - self._opened_clock)

    @opened_at.setter
    def opened_at(self, _: datetime) -> None:
        self._opened_clock = self._clock()

    def seconds_open(self) -> float:
        return 0.0 if self._opened_clock is None else self._clock() - self._opened_clock

    def restore(self, state: str, counter: int, opened: float | None) -> None:
        self._state, self._fail_counter, self._opened_clock = state, counter, opened


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, on_change: Callable[[str, str, str], None]) -> None:
        self._on_change = on_change

    def state_change(self, cb: pybreaker.CircuitBreaker, old: object, new: object) -> None:
        self._on_change(cb.name or "", getattr(old, "name", "closed"), getattr(new, "name", ""))


def _not_counted(exc: BaseException) -> bool:
    return not (isinstance(exc, UpstreamError) and exc.breaker_failure)


class Breaker:
    def __init__(
        self,
        model: str,
        fail_max: int,
        reset_timeout_s: float,
        clock: Callable[[], float],
        on_change: Callable[[str, str, str], None] = lambda *_: None,
    ) -> None:
        self.model = model
        self._storage = _ClockStorage(clock)
        self._cb = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout_s,
            name=model,
            state_storage=self._storage,
            exclude=[_not_counted],
            listeners=[_Listener(on_change)],
            throw_new_error_on_trip=False,
        )
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        """closed | half-open | open (open with its timeout elapsed reads half-open)."""
        name = str(self._cb.current_state)
        if name == "open" and self.seconds_until_half_open() <= 0:
            return "half-open"
        return name

    @property
    def fail_counter(self) -> int:
        return self._cb.fail_counter

    def seconds_until_half_open(self) -> float:
        if str(self._cb.current_state) != "open":
            return 0.0
        return max(0.0, self._cb.reset_timeout - self._storage.seconds_open())

    def admits(self) -> bool:
        """Would a call be let through now (without taking the trial permit)?"""
        state = self.state
        return state == "closed" or (state == "half-open" and not self._trial_in_flight)

    @contextlib.contextmanager
    def calling(self) -> Iterator[None]:
        """Guard one upstream attempt; raises BreakerOpen when it may not run."""
        state = self.state
        if state == "open" or (state == "half-open" and self._trial_in_flight):
            raise BreakerOpen(self.model, self.seconds_until_half_open())
        trial = state == "half-open"
        self._trial_in_flight = self._trial_in_flight or trial
        snapshot = (self._storage.state, self._storage.counter, self._storage._opened_clock)
        try:
            with self._cb.calling():
                yield
        except BaseException as exc:
            if _not_counted(exc):
                self._storage.restore(*snapshot)
                self._cb._state = self._cb._create_new_state(snapshot[0])
            raise
        finally:
            if trial:
                self._trial_in_flight = False

    def reset(self) -> None:
        self._cb.close()
        self._trial_in_flight = False
