"""Bearer gateway key -> Principal, compared in constant time.

The secret is hashed once at start; each request hashes the presented token and
compares it against EVERY configured digest with ``hmac.compare_digest`` (no early
exit), so timing says nothing about which key, or how much of one, matched.
Downstream code only ever sees the key's name.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from accounting.limits import NO_LIMITS, KeyLimits
from accounting.pricing import usd_to_micros
from accounting.store.base import KeyBudget
from gateway.config import KeyConfig, period_seconds
from gateway.errors import GatewayError

OPEN_KEY = "anonymous"


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    models: frozenset[str] | None = None
    max_workflow_budget_micros: int | None = None
    key_budget: KeyBudget | None = None
    limits: KeyLimits = NO_LIMITS

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


def principal_of(key: KeyConfig) -> Principal:
    cap = key.max_workflow_budget_usd
    budget = None
    if key.budget_usd is not None:
        budget = KeyBudget(usd_to_micros(str(key.budget_usd)), period_seconds(key.budget_period))
    return Principal(
        name=key.name,
        models=frozenset(key.models) if key.models is not None else None,
        max_workflow_budget_micros=usd_to_micros(str(cap)) if cap is not None else None,
        key_budget=budget,
        limits=KeyLimits(key.rpm, key.tpm, key.max_inflight),
    )


class Authenticator:
    def __init__(
        self,
        keys: Sequence[tuple[str, KeyConfig]],
        admin_key: str | None,
        metrics_key: str | None = None,
    ) -> None:
        self._keys = [(_digest(secret), principal_of(key)) for secret, key in keys]
        self._admin = _digest(admin_key) if admin_key else None
        self._metrics = _digest(metrics_key) if metrics_key else None
        self.open = not self._keys

    def authenticate(self, authorization: str | None) -> Principal:
        if self.open:
            return Principal(OPEN_KEY)
        token = _bearer(authorization)
        digest = _digest(token)
        found: Principal | None = None
        for candidate, principal in self._keys:
            if hmac.compare_digest(digest, candidate):
                found = principal
        if found is None or not token:
            raise GatewayError(
                401,
                "invalid_api_key",
                "missing or unknown gateway key: send 'Authorization: Bearer <gateway key>' "
                "(a spendgate key, not a provider key)",
                should_retry=False,
            )
        return found

    def is_admin(self, authorization: str | None) -> bool:
        if self._admin is None:
            return False
        return hmac.compare_digest(_digest(_bearer(authorization)), self._admin)

    @property
    def metrics_protected(self) -> bool:
        return self._metrics is not None

    def may_read_metrics(self, authorization: str | None) -> bool:
        """The metrics key (or the admin key) when one is configured; anyone otherwise."""
        if self._metrics is None:
            return True
        digest = _digest(_bearer(authorization))
        metrics = hmac.compare_digest(digest, self._metrics)
        admin = self._admin is not None and hmac.compare_digest(digest, self._admin)
        return metrics or admin


def _bearer(authorization: str | None) -> str:
    if not authorization:
        return ""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
