"""Try candidate models in order; collect each candidate's failure.

A candidate is skipped at once when its breaker is open, or when the caller may not use
it (``allowed``: a key's model allow-list applies to every candidate, fallbacks
included). The next one is tried when
the one before exhausted its retries on retryable errors, or was rate-limited beyond
what the deadline allows. A client error (4xx) goes back to the caller unchanged,
except a context-window error, which moves to the failing model's
``context_window_fallbacks`` (never resent unchanged to the same model).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

from policies.breaker import Breaker, BreakerOpen
from policies.deadline import Deadline
from policies.errors import Failure, NoRouteAvailable, RoutingFailed, UpstreamError
from policies.retry import RetryBudget, RetryHooks, RetrySettings, call_with_retries

T = TypeVar("T")


@dataclass(frozen=True)
class Route:
    """A model's runtime policy objects (built once at start)."""

    model: str
    retry: RetrySettings
    breaker: Breaker
    budget: RetryBudget
    fallbacks: tuple[str, ...] = ()
    context_window_fallbacks: tuple[str, ...] = ()


@dataclass
class Step:
    """Where the request stands: which candidate, which attempt."""

    model: str
    reason: str  # primary | fallback | context_window
    attempt: int = 0
    last_error: UpstreamError | None = None  # of the current candidate
    waiting: int = 0  # candidates still queued after this one (for its share of time)


@dataclass
class Outcome:
    failures: list[Failure] = field(default_factory=list)
    open_breakers: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # model -> why it was not tried


AttemptFn = Callable[[Step], Awaitable[T]]
FitsFn = Callable[[str], Awaitable[str | None]]


@dataclass
class Choices:
    """What decides, besides breakers, whether a candidate runs, and who hears of it."""

    allowed: Callable[[str], bool] = lambda _: True  # the caller may use it
    fits: FitsFn | None = None  # None, or why a fallback cannot serve this request
    on_fallback: Callable[[str, str, str], None] = lambda *_: None  # (from, to, why)
    on_skip: Callable[[str, str, str], None] = lambda *_: None  # (from, to, why)


async def run(
    model: str,
    route_of: Callable[[str], Route],
    attempt: AttemptFn[T],
    deadline: Deadline,
    hooks: RetryHooks,
    *,
    sdk_retrying: bool = False,
    choices: Choices | None = None,
) -> T:
    choices = choices or Choices()
    outcome = Outcome()
    queue: list[tuple[str, str]] = [(model, "primary")]
    queue += _candidates(route_of(model).fallbacks, "fallback", choices.allowed, outcome)
    step = Step(model, "primary")
    previous: str | None = None
    while queue:
        name, reason = queue.pop(0)
        if previous is not None and await _skipped(name, previous, choices, outcome):
            continue
        if previous is not None:
            choices.on_fallback(previous, name, _why(outcome, previous))
        previous = name
        step.model, step.reason, step.last_error = name, reason, None
        step.waiting = len(queue)
        try:
            return await _run_one(route_of(name), step, attempt, deadline, hooks, sdk_retrying)
        except BreakerOpen as exc:
            if step.last_error is not None:  # it opened during our own retries
                outcome.failures.append(Failure(name, step.last_error))
            else:
                outcome.open_breakers[name] = exc.retry_after_s
        except UpstreamError as exc:
            queue = _after_failure(name, exc, route_of(name), queue, choices, outcome)
    _no_candidate_left(outcome)


async def _skipped(name: str, previous: str, choices: Choices, outcome: Outcome) -> bool:
    """Whether fallback ``name`` cannot serve the request (noted, and reported)."""
    if choices.fits is None:
        return False
    why = await choices.fits(name)
    if why is None:
        return False
    outcome.skipped[name] = why
    choices.on_skip(previous, name, why)
    return True


def _after_failure(
    name: str,
    exc: UpstreamError,
    route: Route,
    queue: list[tuple[str, str]],
    choices: Choices,
    outcome: Outcome,
) -> list[tuple[str, str]]:
    """The queue after ``name`` failed with ``exc``, or ``exc`` raised when no candidate
    can do better: a client error goes back unchanged, a context-window error moves
    to the context-window fallbacks."""
    outcome.failures.append(Failure(name, exc))
    if exc.context_window:
        fallbacks = route.context_window_fallbacks
        queue = _candidates(fallbacks, "context_window", choices.allowed, outcome)
        if not queue:
            raise exc
        return queue
    if not exc.retryable:
        raise exc
    return queue


def _no_candidate_left(outcome: Outcome) -> NoReturn:
    if not outcome.failures and outcome.open_breakers:
        raise NoRouteAvailable(min(outcome.open_breakers.values()), list(outcome.open_breakers))
    last = outcome.failures[-1].error if outcome.failures else None
    if last is not None and last.context_window:  # no context-window fallback could serve
        raise last
    raise RoutingFailed(outcome.failures, outcome.skipped)


def _candidates(
    names: tuple[str, ...], reason: str, allowed: Callable[[str], bool], outcome: Outcome
) -> list[tuple[str, str]]:
    """The candidates the caller may use, in order; the others are noted as skipped."""
    kept = []
    for name in names:
        if allowed(name):
            kept.append((name, reason))
        else:
            outcome.skipped[name] = "not allowed for this key"
    return kept


async def _run_one(
    route: Route,
    step: Step,
    attempt: AttemptFn[T],
    deadline: Deadline,
    hooks: RetryHooks,
    sdk_retrying: bool,
) -> T:
    settings = route.retry
    if sdk_retrying:
        settings = RetrySettings(
            1, settings.initial_backoff_s, settings.max_backoff_s, settings.max_retry_after_s
        )

    async def once(number: int) -> T:
        step.attempt = number
        with route.breaker.calling():
            try:
                return await attempt(step)
            except UpstreamError as exc:
                step.last_error = exc
                raise

    return await call_with_retries(once, settings, route.budget, deadline, hooks)


def _why(outcome: Outcome, model: str) -> str:
    if model in outcome.open_breakers:
        return "breaker_open"
    for failure in reversed(outcome.failures):
        if failure.model == model:
            return "context_window" if failure.error.context_window else failure.error.kind
    return "unknown"
