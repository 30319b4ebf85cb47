"""``RedisStore``: the store replicas share.

Every read-modify-write is one Lua script (``redis_scripts``), registered once and run
with EVALSHA, so a reserve is check-and-hold atomically across replicas. Keys live
under ``prefix`` and are hash-tagged per tenant key; scripts also touch the global
``running`` index and ``ledger`` stream, so a single Redis (or a Sentinel-managed
primary) is required, not Redis Cluster.

Nothing grows forever: a workflow expires ``workflow_ttl_s`` after its last activity,
a hold ``workflow_ttl_s`` after its lease ends, a key budget window ``period_margin_s``
after the window ends, an idempotency record at its TTL (a pending claim at its
lease), the ledger stream is capped at about ``ledger_maxlen`` entries, and ``sweep``
trims the running index of workflows idle longer than ``workflow_ttl_s``.

Timeouts are short and there are no client retries (a retried script could run
twice): an unreachable, paused or loading Redis raises ``StoreUnavailable`` within
about ``socket_timeout`` and budgets fail closed.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from accounting.errors import BudgetExceeded, StoreUnavailable
from accounting.store import redis_scripts as lua
from accounting.store.base import (
    Charge,
    IdemClaim,
    KeySpend,
    Reservation,
    Reserved,
    ReserveRequest,
    WorkflowState,
)
from accounting.store.common import (
    DEFAULT_WORKFLOW_TTL_S,
    IdSource,
    counted_tokens,
    new_token,
    period_start,
    tokens_json,
    validate_request,
)

T = TypeVar("T")

# Errors meaning "Redis cannot be used right now"; anything else is a bug and surfaces.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    rexc.ConnectionError,  # includes BusyLoadingError, MaxConnectionsError, auth failures
    rexc.TimeoutError,
    rexc.ReadOnlyError,
    rexc.OutOfMemoryError,
    rexc.MasterDownError,
    OSError,
)


def _stale_connection_checks() -> dict[str, Any]:
    """Pool options so a pooled connection the server closed (a restart) is replaced
    when it is checked out: redis-py skips that check while "maintenance
    notifications" are on, which they are by default since 7.x."""
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # older redis-py: always checks
        return {}
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def _tenant(key: str) -> str:
    """The gateway key, escaped so it holds no ``:`` and no hash-tag braces."""
    return key.replace("%", "%25").replace("{", "%7B").replace("}", "%7D").replace(":", "%3A")


def _f(value: float) -> str:
    return repr(float(value))


def _ttl(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class RedisStore:
    """See ``accounting.store.base.Store`` for the contract."""

    def __init__(
        self,
        url: str,
        prefix: str = "spendgate:",
        workflow_ttl_s: int = DEFAULT_WORKFLOW_TTL_S,
        *,
        socket_timeout: float = 1.0,
        socket_connect_timeout: float = 1.0,
        max_connections: int = 128,
        pool_timeout: float = 5.0,
        period_margin_s: int = 86400,
        ledger_maxlen: int = 100_000,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.workflow_ttl_s = workflow_ttl_s
        self.period_margin_s = period_margin_s
        self.ledger_maxlen = ledger_maxlen
        self._ids = IdSource()
        self._pool_kwargs: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
            "max_connections": max_connections,
            "timeout": pool_timeout,
            "retry": Retry(NoBackoff(), 0),
            **_stale_connection_checks(),
        }
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._running = f"{prefix}running"
        self._ledger = f"{prefix}ledger"

    # -- plumbing ---------------------------------------------------------------
    async def open(self) -> None:
        """Create the pool and register the scripts; connects lazily (no I/O here)."""
        if self._client is not None:
            return
        pool = aioredis.BlockingConnectionPool.from_url(self.url, **self._pool_kwargs)
        client = aioredis.Redis(connection_pool=pool)
        scripts = {
            "reserve": lua.RESERVE,
            "settle": lua.SETTLE,
            "complete": lua.COMPLETE,
            "set_cap": lua.SET_CAP,
            "idem_claim": lua.IDEM_CLAIM,
            "idem_complete": lua.IDEM_COMPLETE,
            "idem_release": lua.IDEM_RELEASE,
        }
        self._scripts = {name: client.register_script(src) for name, src in scripts.items()}
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose(close_connection_pool=True)

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise StoreUnavailable("the redis store is not open")
        return self._client

    async def _do(self, pending: Awaitable[T]) -> T:
        try:
            return await pending
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"redis store unavailable: {exc}") from exc

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[str]) -> Any:
        self._redis()
        return await self._do(self._scripts[name](keys=list(keys), args=list(args)))

    def _base(self, key: str) -> str:
        return f"{self.prefix}{{{_tenant(key)}}}"

    def _wf_key(self, key: str, workflow_id: str) -> str:
        return f"{self._base(key)}:wf:{workflow_id}"

    async def ping(self) -> None:
        await self._do(cast(Awaitable[Any], self._redis().ping()))

    # -- budgets ----------------------------------------------------------------
    async def reserve(self, req: ReserveRequest) -> Reserved:
        validate_request(req)
        rid, kb, wid = self._ids(), req.key_budget, req.workflow_id
        pstart, window_ttl = None, 1
        if kb is not None:
            pstart = period_start(req.now, kb.period_s)
            window_ttl = _ttl(pstart + kb.period_s - req.now) + self.period_margin_s
        base, expires_at = self._base(req.key), req.now + req.lease_s
        keys = [
            f"{base}:wf:{wid or ''}", f"{base}:wh:{wid or ''}", f"{base}:kp:{pstart}",
            f"{base}:kh:{pstart}", f"{base}:h:{rid}", self._running,
        ]  # fmt: skip
        args = [
            base, f"{_tenant(req.key)}:{wid or ''}", rid, str(req.amount_micros),
            str(req.tokens), _f(req.now), _f(expires_at), wid or "",
            "" if req.cap_micros is None else str(req.cap_micros),
            "" if req.cap_tokens is None else str(req.cap_tokens),
            "0" if req.step is None else "1", req.step or "",
            "" if kb is None else str(kb.limit_micros), str(pstart), str(window_ttl),
            str(self.workflow_ttl_s), str(_ttl(req.lease_s) + self.workflow_ttl_s),
        ]  # fmt: skip
        reply = await self._script("reserve", keys, args)
        outcome = reply[0].decode()
        state = _state(req.key, wid, reply[1]) if wid is not None else None
        if outcome != "ok":
            raise _refusal(outcome, state, req, reply)
        res = Reservation(rid, req.key, wid, req.amount_micros, req.tokens, pstart, expires_at)
        return Reserved(res, state)

    async def settle(self, res: Reservation, charge: Charge, now: float) -> WorkflowState | None:
        base, wid = self._base(res.key), res.workflow_id
        keys = [
            f"{base}:h:{res.id}", f"{base}:wf:{wid or ''}", f"{base}:wh:{wid or ''}",
            f"{base}:kp:{res.period_start}", f"{base}:kh:{res.period_start}",
            self._running, self._ledger,
        ]  # fmt: skip
        entry = {
            "ts": _f(now), "reservation_id": res.id, "request_id": charge.request_id,
            "key": res.key, "workflow_id": wid or "", "model": charge.model,
            "cost_micros": str(charge.cost_micros), "tokens": tokens_json(charge.tokens),
            "partial": str(int(charge.partial)),
        }  # fmt: skip
        args = [
            res.id, str(charge.cost_micros), str(counted_tokens(charge.tokens)), _f(now),
            str(int(charge.sent)), str(int(charge.is_retry)), str(int(charge.is_fallback)),
            str(int(charge.partial)), "0" if wid is None else "1",
            "0" if res.period_start is None else "1", f"{_tenant(res.key)}:{wid or ''}",
            str(self.workflow_ttl_s), str(self.ledger_maxlen), str(len(entry)),
        ]  # fmt: skip
        for field, value in entry.items():
            args += [field, value]
        for kind, count in charge.tokens.items():
            args += [kind, str(int(count))]
        reply = await self._script("settle", keys, args)
        return _state(res.key, wid, reply[1]) if wid is not None else None

    async def get_workflow(self, key: str, workflow_id: str, now: float) -> WorkflowState | None:
        pending = cast(
            Awaitable[list[bytes]], self._redis().hgetall(self._wf_key(key, workflow_id))
        )
        found = await self._do(pending)
        return _state(key, workflow_id, found)

    async def complete_workflow(
        self, key: str, workflow_id: str, now: float
    ) -> WorkflowState | None:
        keys = [self._wf_key(key, workflow_id), self._running]
        args = [_f(now), f"{_tenant(key)}:{workflow_id}", str(self.workflow_ttl_s)]
        return _state(key, workflow_id, await self._script("complete", keys, args))

    async def set_workflow_cap(
        self, key: str, workflow_id: str, cap_micros: int | None, cap_tokens: int | None, now: float
    ) -> WorkflowState | None:
        args = ["" if cap_micros is None else str(cap_micros)]
        args.append("" if cap_tokens is None else str(cap_tokens))
        reply = await self._script("set_cap", [self._wf_key(key, workflow_id)], args)
        return _state(key, workflow_id, reply)

    async def list_stalled(self, idle_before: float, limit: int = 100) -> list[WorkflowState]:
        found: list[WorkflowState] = []
        offset = 0
        while len(found) < limit:
            pending = self._redis().zrangebyscore(
                self._running, "-inf", f"({_f(idle_before)}", start=offset, num=limit
            )
            members = await self._do(cast(Awaitable[list[bytes]], pending))
            states, gone = await self._load_members(members)
            found += [s for s in states if s.status == "running"]
            if gone:
                await self._do(self._redis().zrem(self._running, *gone))
            if len(members) < limit:
                break
            offset += len(members) - len(gone)
        return found[:limit]

    async def _load_members(self, members: list[bytes]) -> tuple[list[WorkflowState], list[bytes]]:
        """The workflows behind running-index members, and the members whose state expired."""
        pairs = []
        for member in members:
            tenant, wid = member.decode().split(":", 1)
            pairs.append((unquote(tenant), wid))
        async with self._redis().pipeline(transaction=False) as pipe:
            for key, wid in pairs:
                pipe.hgetall(self._wf_key(key, wid))
            hashes: list[dict[bytes, bytes]] = await self._do(pipe.execute())
        states, gone = [], []
        for member, (key, wid), found in zip(members, pairs, hashes, strict=True):
            state = _state(key, wid, found)
            if state is None:
                gone.append(member)
            else:
                states.append(state)
        return states, gone

    async def count_stalled(self, idle_before: float) -> int:
        pending = self._redis().zcount(self._running, "-inf", f"({_f(idle_before)}")
        return int(await self._do(pending))

    async def key_spend(self, key: str, period_s: int, now: float) -> KeySpend:
        pstart = period_start(now, period_s)
        window = f"{self._base(key)}:kp:{pstart}"
        pending = self._redis().hmget(window, ["spent_micros", "reserved_micros"])
        spent, reserved = await self._do(cast(Awaitable[list[bytes | None]], pending))
        return KeySpend(key, pstart, int(spent or 0), int(reserved or 0))

    # -- idempotency ------------------------------------------------------------
    def _idem_key(self, scope: str) -> str:
        return f"{self.prefix}idem:{scope}"

    async def idem_claim(
        self, scope: str, fingerprint: str, lease_s: float, now: float
    ) -> IdemClaim:
        token = new_token()
        args = [fingerprint, token, _f(now), _f(now + lease_s), str(_ttl(lease_s * 1000))]
        reply = await self._script("idem_claim", [self._idem_key(scope)], args)
        outcome = reply[0].decode()
        if outcome == "claimed":
            return IdemClaim("claimed", token=token)
        if outcome == "replay":
            return IdemClaim("replay", record=bytes(reply[1]))
        if outcome == "in_flight":
            return IdemClaim("in_flight", lease_until=float(reply[1]))
        return IdemClaim("conflict")

    async def idem_complete(
        self, scope: str, token: str, record: bytes, ttl_s: float, now: float
    ) -> bool:
        keys = [self._idem_key(scope)]
        args: list[Any] = [token, record, _f(now + ttl_s), str(_ttl(ttl_s * 1000))]
        return bool(await self._script("idem_complete", keys, args))

    async def idem_release(self, scope: str, token: str) -> None:
        await self._script("idem_release", [self._idem_key(scope)], [token])

    async def sweep(self, now: float) -> int:
        """Per-key TTLs expire state in Redis; this only trims the running index of
        workflows idle longer than ``workflow_ttl_s`` (their state has expired)."""
        cutoff = f"({_f(now - self.workflow_ttl_s)}"
        return int(await self._do(self._redis().zremrangebyscore(self._running, "-inf", cutoff)))


def _state(
    key: str, workflow_id: str, found: Sequence[bytes] | dict[bytes, bytes]
) -> WorkflowState | None:
    if not found:
        return None
    if isinstance(found, dict):
        fields = {k.decode(): v for k, v in found.items()}
    else:
        fields = {found[i].decode(): found[i + 1] for i in range(0, len(found), 2)}

    def count(name: str) -> int:
        return int(fields.get(name, b"0"))

    def optional(name: str) -> bytes | None:
        return fields.get(name)

    cap_micros, cap_tokens, step = optional("cap_micros"), optional("cap_tokens"), optional("step")
    completed_at = optional("completed_at")
    return WorkflowState(
        key=key, workflow_id=workflow_id,
        cap_micros=None if cap_micros is None else int(cap_micros),
        cap_tokens=None if cap_tokens is None else int(cap_tokens),
        spent_micros=count("spent_micros"), reserved_micros=count("reserved_micros"),
        tokens_spent=count("tokens_spent"), tokens_reserved=count("tokens_reserved"),
        tokens_by_kind={k[3:]: int(v) for k, v in fields.items() if k.startswith("tk:")},
        calls=count("calls"), retries=count("retries"), fallbacks=count("fallbacks"),
        partial_streams=count("partial_streams"), expired_holds=count("expired_holds"),
        expired_micros=count("expired_micros"), started_at=float(fields["started_at"]),
        last_seen_at=float(fields["last_seen_at"]),
        step=None if step is None else step.decode(),
        status="completed" if fields.get("status") == b"completed" else "running",
        completed_at=None if completed_at is None else float(completed_at),
    )  # fmt: skip


def _refusal(
    outcome: str, state: WorkflowState | None, req: ReserveRequest, reply: list[Any]
) -> BudgetExceeded:
    if outcome == "key" and req.key_budget is not None:
        committed = int(reply[2]) + int(reply[3])
        return BudgetExceeded(
            "key", "usd", req.key_budget.limit_micros, committed, req.amount_micros
        )
    if state is None:
        raise RuntimeError(f"unexpected reserve reply {outcome!r}")
    if outcome == "tokens" and state.cap_tokens is not None:
        committed = state.tokens_spent + state.tokens_reserved
        return BudgetExceeded("workflow", "tokens", state.cap_tokens, committed, req.tokens)
    if outcome == "workflow" and state.cap_micros is not None:
        committed = state.spent_micros + state.reserved_micros
        return BudgetExceeded("workflow", "usd", state.cap_micros, committed, req.amount_micros)
    raise RuntimeError(f"unexpected reserve reply {outcome!r}")
