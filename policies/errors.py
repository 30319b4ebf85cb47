"""The error tree the policies decide on.

Retry, breaker and fallback read attributes, never message strings::

    PolicyError
    ├── UpstreamError          one attempt's failure, classified once by its provider
    │     kind:            outcome label (rate_limited, server_error, timeout,
    │                      connect_error, client_error, stream_error)
    │     retryable:       another attempt at the same model may succeed
    │     breaker_failure: the deployment is unhealthy (counts against its breaker)
    │     context_window:  the prompt is too long for this model
    │     reached:         the request reached the provider, which may bill it
    │                      (False only when nothing was sent: connect failures)
    │     retry_here:      another attempt at the same model is worth waiting for
    │                      (False for silence: a route that did not answer in time
    │                      is not tried again, the next candidate is)
    ├── NoRouteAvailable       every candidate's breaker is open
    ├── DeadlineExceeded       the request's deadline passed
    └── RoutingFailed          every candidate failed; carries each one's error
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from accounting.usage import Usage


class PolicyError(Exception):
    """Base of the errors the policies raise or decide on."""


class UpstreamError(PolicyError):
    def __init__(
        self,
        message: str,
        *,
        kind: str,
        status: int | None = None,
        retryable: bool = False,
        breaker_failure: bool = False,
        retry_after_s: float | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        context_window: bool = False,
        usage: Usage | None = None,
        reached: bool = True,
        retry_here: bool = True,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status = status
        self.retryable = retryable
        self.breaker_failure = breaker_failure
        self.retry_after_s = retry_after_s
        self.body = body
        self.headers = dict(headers or {})
        self.context_window = context_window
        self.usage = usage
        self.reached = reached
        self.retry_here = retry_here

    @property
    def passthrough(self) -> bool:
        """An upstream client error the caller should see unchanged."""
        return self.kind == "client_error" and self.body is not None


@dataclass
class Failure:
    model: str
    error: UpstreamError


class NoRouteAvailable(PolicyError):
    def __init__(self, retry_after_s: float, models: list[str]) -> None:
        self.retry_after_s = retry_after_s
        self.models = models
        super().__init__("every candidate model's circuit breaker is open: " + ", ".join(models))


class DeadlineExceeded(PolicyError):
    def __init__(self, message: str = "the request's deadline passed") -> None:
        super().__init__(message)


@dataclass
class RoutingFailed(PolicyError):
    """Every candidate failed. The last failure decides the status."""

    failures: list[Failure] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # candidates never tried, and why

    def __str__(self) -> str:
        tried = [f"{f.model}: {f.error.message}" for f in self.failures]
        return "; ".join(tried + [f"{model} skipped: {why}" for model, why in self.skipped.items()])

    @property
    def last(self) -> UpstreamError:
        return self.failures[-1].error
