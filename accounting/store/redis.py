"""``RedisStore``: the store replicas share, on a single Redis (``redis://``,
``rediss://``; version 6.2 or later), on a Sentinel-managed primary
(``redis+sentinel://s1:p,.../service/db``, ``redis_sentinel``; a single Redis's
layout) or on Redis Cluster (``redis+cluster://h:p,...``, redis-py's ``RedisCluster``;
also Valkey cluster).

Every read-modify-write is one Lua script (``redis_scripts``, ``redis_scripts_admin``;
the key layout is there), registered once and run with EVALSHA, so a reserve is
check-and-hold atomically across replicas, in one round trip, and a settle likewise.
Keys live under ``prefix``; everything of one tenant (gateway key) shares its hash
tag: its workflows, holds, lease and running indexes, key budget windows, ledger,
idempotency records and guardrail state, so each script touches one cluster slot.
What spans tenants is kept by operations that each touch one slot: the store-wide
keys (epoch, tenant registry, costs by kind) share the ``{%store}`` tag, and the sweep
and the stalled listing go through the tenant registry one tenant script at a time.
The layout is the same on a single Redis and on a cluster.

Nothing grows forever: a workflow expires ``workflow_ttl_s`` after its last activity,
a hold ``workflow_ttl_s`` after its lease ends, a key budget window
``period_margin_s`` after the window ends, an idempotency record at its TTL (a
pending claim at its lease), the ledger stream is capped at about ``ledger_maxlen``
entries per tenant (and expires a workflow TTL after its last settle), a tenant's
lease index empties as its holds settle or expire, its running index expires with
its last workflow, a workflow's
loop guard counts and the tenant's workflow index share the workflow TTL (an index
entry whose workflow expired is dropped when a listing meets it), a kind's costs
expire a workflow TTL after its last. A settled hold
is a one-field tombstone (about 100 bytes) kept ``settled_ttl_s``, so a repeated
settle stays a no-op: a repeat comes from a caller that lost the answer and retries
as soon as Redis answers again, so a day covers any outage worth surviving, where
the workflow TTL would hold a month of every request's tombstone in memory.
``sweep`` expires every hold whose lease ran out and trims the running indexes,
tenant by tenant from the registry (no KEYS or SCAN). The registry keeps one short
entry per gateway key that ever had state.

What it can lose: a Redis without persistence loses everything on a restart, and a
failover may promote an empty replica. That is detected (``redis_epoch``): budgets
and idempotency fail closed with StoreReset until an operator accepts the reset; what
that means for money is described there.

Timeouts are short and honest. There are no client retries (a retried script could
run twice), and every state-changing script except settle (idempotent, and retried
by its caller) carries a fence: real time now + half of ``socket_timeout``. The
script compares it with the server's clock (``TIME``) before anything else and does
nothing once it has passed, so a call that timed out here (a paused or overloaded
Redis) never takes effect when Redis gets to it later. That tolerates a clock skew
between this host and Redis of up to half the socket timeout; a Redis clock ahead by
more makes every fenced call fail (closed), one behind by more lets a late call
through. The fence also counts time spent waiting for a pooled connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, cast

from accounting.errors import StoreUnavailable
from accounting.store.base import (
    Charge,
    IdemClaim,
    KeySpend,
    Reservation,
    Reserved,
    ReserveRequest,
    Settled,
)
from accounting.store.common import (
    DEFAULT_WORKFLOW_TTL_S,
    FINGERPRINTS_KEPT,
    ORPHAN_WINDOW_S,
    IdSource,
    check_duration,
    check_int,
    check_period,
    check_time,
    check_ttl,
    counted_tokens,
    new_token,
    period_start,
    stored_float,
    stored_int,
    tokens_json,
    validate_request,
    validate_settle,
)
from accounting.store.guardrails import counts_call
from accounting.store.redis_client import ScriptClient
from accounting.store.redis_codec import f, opt, refusal, state, tenant_of, ttl
from accounting.store.redis_limits import RedisLimiter
from accounting.store.redis_workflows import RedisWorkflows

SWEEP_BATCH = 500  # holds per SWEEP_TENANT call
SWEEP_PARALLEL = 16  # tenants swept at once


class RedisStore(RedisWorkflows):
    """See ``accounting.store.base.Store`` for the contract; the methods of a
    workflow's life off the money path are in ``RedisWorkflows``."""

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
        settled_ttl_s: int = 86400,
    ) -> None:
        check_ttl("workflow_ttl_s", workflow_ttl_s)
        check_ttl("period_margin_s", period_margin_s)
        check_ttl("settled_ttl_s", settled_ttl_s)
        check_int("ledger_maxlen", ledger_maxlen)
        self.url = url
        self.prefix = prefix
        self.workflow_ttl_s = workflow_ttl_s
        self.period_margin_s = period_margin_s
        self.ledger_maxlen = ledger_maxlen
        self.settled_ttl_s = settled_ttl_s
        self._ids = IdSource()
        self._c = ScriptClient(
            url, prefix, socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout, max_connections=max_connections,
            pool_timeout=pool_timeout,
        )  # fmt: skip

    def limiter(self) -> RedisLimiter:
        """Per-key rate limits shared through this Redis (``redis_limits``)."""
        return RedisLimiter(self._c)

    # -- plumbing ---------------------------------------------------------------
    async def open(self) -> None:
        """Create the pool, register the scripts and read the epoch. A Redis that is
        unreachable now is not an error: the epoch is then read by the first
        operation or ``check``, and until then operations fail closed."""
        await self._c.open()
        try:
            await self._adopt_legacy()
            await self._c.epoch.establish(self._c.script)
        except StoreUnavailable:
            return  # see the docstring: established lazily

    async def _adopt_legacy(self) -> None:
        """On a single Redis an older version may have used (it kept store-wide keys
        untagged): take over its epoch (its tenants' markers hold it) and register the
        tenants of its lease and running indexes, so the sweeps reach their holds.
        Additive only; the old keys are left for the operator to delete."""
        if self._c.cluster is not None:
            return
        client, old = self._c.redis(), self.prefix
        legacy = await self._c.do(cast(Awaitable[bytes | None], client.get(f"{old}epoch")))
        self._c.epoch.legacy = "" if legacy is None else legacy.decode(errors="replace")
        leases = cast(Awaitable[list[bytes]], client.zrange(f"{old}lease_tenants", 0, -1))
        tenants = {m.decode(errors="replace") for m in await self._c.do(leases)}
        running = cast(Awaitable[list[bytes]], client.zrange(f"{old}running", 0, -1))
        for member in await self._c.do(running):
            tenant, sep, _ = member.decode(errors="replace").partition(":")
            if sep:
                tenants.add(tenant)
        for tenant in sorted(tenants):
            await self._c.register(tenant)

    async def close(self) -> None:
        await self._c.close()

    async def ping(self) -> None:
        """A write (``<prefix>ready``, short TTL) together with the epoch check."""
        self._c.epoch.guard()
        await self._c.epoch.check(self._c.script, ready=True)
        self._c.epoch.guard()

    async def check(self, now: float) -> None:
        """Detect a lost store, or leave the reset state; see ``redis_epoch``. A reset
        is reported by ``reset_info``, not raised; only unreachable raises."""
        self._c.redis()
        await self._c.epoch.check(self._c.script)

    def reset_info(self) -> dict[str, object] | None:
        reset = self._c.epoch.reset
        return None if reset is None else dict(reset)

    async def accept_reset(self, now: float) -> None:
        self._c.redis()
        await self._c.epoch.accept(self._c.script)

    # -- budgets ----------------------------------------------------------------
    async def reserve(self, req: ReserveRequest) -> Reserved:
        validate_request(req)
        rid, kb, wid = self._ids(), req.key_budget, req.workflow_id
        pstart, window_ttl = None, 1
        if kb is not None:
            pstart = period_start(req.now, kb.period_s)
            window_ttl = ttl(pstart + kb.period_s - req.now + self.period_margin_s)
        tenant = tenant_of(req.key)
        keys, args = self._reserve_call(req, tenant, rid, pstart, window_ttl)
        reply = await self._c.tenant_script("reserve", tenant, keys, args, fenced=True)
        outcome = reply[0].decode()
        found = state(req.key, wid, reply[1]) if wid is not None else None
        if outcome != "ok":
            raise refusal(outcome, found, req, reply)
        res = Reservation(
            rid, req.key, wid, req.amount_micros, req.tokens, pstart, req.now + req.lease_s,
            req.cap_micros, req.cap_tokens,
        )  # fmt: skip
        return Reserved(res, found)

    def _reserve_call(
        self, req: ReserveRequest, tenant: str, rid: str, pstart: int | None, window_ttl: int
    ) -> tuple[list[str], list[str]]:
        """The reserve script's keys and arguments (see ``redis_scripts.RESERVE``)."""
        base, kb, wid = self._c.base(tenant), req.key_budget, req.workflow_id or ""
        keys = [
            f"{base}:wf:{wid}", f"{base}:wh:{wid}", f"{base}:kp:{pstart}", f"{base}:kh:{pstart}",
            f"{base}:h:{rid}", f"{base}:running", f"{base}:leases",
            f"{base}:fp:{wid}", f"{base}:fpo:{wid}", f"{base}:wfs",
        ]  # fmt: skip
        args = [
            base, wid, rid, str(req.amount_micros), str(req.tokens), f(req.now),
            f(req.now + req.lease_s), wid, opt(req.cap_micros), opt(req.cap_tokens),
            "0" if req.step is None else "1", req.step or "",
            "" if kb is None else str(kb.limit_micros), opt(pstart), str(window_ttl),
            str(self.workflow_ttl_s), str(ttl(req.lease_s + self.workflow_ttl_s)), tenant,
            "" if req.timeout_s is None else f(req.timeout_s), opt(req.max_calls),
            req.name or "", "1" if req.new_call else "0",
            (req.fingerprint or "") if counts_call(req) else "", str(req.max_identical),
            str(FINGERPRINTS_KEPT),
        ]  # fmt: skip
        return keys, args

    async def settle(self, res: Reservation, charge: Charge, now: float) -> Settled:
        validate_settle(res, charge, now)
        tenant, wid = tenant_of(res.key), res.workflow_id
        base = self._c.base(tenant)
        keys = [
            f"{base}:h:{res.id}", f"{base}:wf:{wid or ''}", f"{base}:wh:{wid or ''}",
            f"{base}:kp:{res.period_start}", f"{base}:kh:{res.period_start}",
            f"{base}:running", f"{base}:ledger", f"{base}:leases", f"{base}:wfs",
            f"{base}:fp:{wid or ''}", f"{base}:fpo:{wid or ''}",
        ]  # fmt: skip
        entry = {
            "ts": f(now), "reservation_id": res.id, "request_id": charge.request_id,
            "key": res.key, "workflow_id": wid or "", "model": charge.model,
            "cost_micros": str(charge.cost_micros), "tokens": tokens_json(charge.tokens),
            "partial": str(int(charge.partial)), "rule": charge.rule,
        }  # fmt: skip
        # see ORPHAN_WINDOW_S; the next reservation against the window sets its true TTL
        window_ttl = ORPHAN_WINDOW_S + self.period_margin_s
        args = [
            res.id, str(charge.cost_micros), str(counted_tokens(charge.tokens)), f(now),
            str(int(charge.sent)), str(int(charge.is_retry)), str(int(charge.is_fallback)),
            str(int(charge.partial)), "0" if wid is None else "1",
            "0" if res.period_start is None else "1", wid or "",
            str(self.workflow_ttl_s), str(self.ledger_maxlen), str(self.settled_ttl_s),
            opt(res.cap_micros), opt(res.cap_tokens), str(window_ttl), wid or "",
            str(len(entry)),
        ]  # fmt: skip
        for field, value in entry.items():
            args += [field, value]
        for kind, count in charge.tokens.items():
            args += [kind, str(int(count))]
        # not fenced: a settle is idempotent, and its caller retries it until it lands
        reply = await self._c.tenant_script("settle", tenant, keys, args, fenced=False)
        found = state(res.key, wid, reply[1]) if wid is not None else None
        return Settled(found, orphan=reply[0] == b"orphan")

    async def key_spend(self, key: str, period_s: int, now: float) -> KeySpend:
        check_period("period_s", period_s)
        check_time("now", now)
        self._c.epoch.guard()
        pstart = period_start(now, period_s)
        window = f"{self._c.base(tenant_of(key))}:kp:{pstart}"
        pending = self._c.redis().hmget(window, ["spent_micros", "reserved_micros"])
        spent, reserved = await self._c.do(cast(Awaitable[list[bytes | None]], pending))
        return KeySpend(key, pstart, stored_int(spent or 0), stored_int(reserved or 0))

    # -- idempotency ------------------------------------------------------------
    def _idem_key(self, tenant: str, scope: str) -> str:
        return f"{self._c.base(tenant)}:idem:{scope}"

    async def idem_claim(
        self, key: str, scope: str, fingerprint: str, lease_s: float, now: float
    ) -> IdemClaim:
        check_duration("lease_s", lease_s)
        check_time("now", now)
        tenant, token = tenant_of(key), new_token()
        args = [fingerprint, token, f(now), f(now + lease_s), str(ttl(lease_s * 1000))]
        keys = [self._idem_key(tenant, scope)]
        reply = await self._c.tenant_script("idem_claim", tenant, keys, args, fenced=True)
        outcome = reply[0].decode()
        if outcome == "claimed":
            return IdemClaim("claimed", token=token)
        if outcome == "replay":
            return IdemClaim("replay", record=bytes(reply[1]))
        if outcome == "in_flight":
            return IdemClaim("in_flight", lease_until=stored_float(reply[1]))
        return IdemClaim("conflict")

    async def idem_complete(
        self, key: str, scope: str, token: str, record: bytes, ttl_s: float, now: float
    ) -> bool:
        check_duration("ttl_s", ttl_s)
        check_time("now", now)
        tenant = tenant_of(key)
        args: list[Any] = [token, record, f(now + ttl_s), str(ttl(ttl_s * 1000))]
        keys = [self._idem_key(tenant, scope)]
        reply = await self._c.tenant_script("idem_complete", tenant, keys, args, fenced=True)
        return bool(reply[1])

    async def idem_release(self, key: str, scope: str, token: str) -> None:
        tenant = tenant_of(key)
        keys = [self._idem_key(tenant, scope)]
        await self._c.tenant_script("idem_release", tenant, keys, [token], fenced=True)

    # -- upkeep -----------------------------------------------------------------
    async def sweep(self, now: float) -> int:
        """Expire every hold whose lease ran out and trim the running indexes of
        workflows idle longer than ``workflow_ttl_s`` (their state has expired),
        tenant by tenant from the registry, each tenant in scripts of its own slot.
        Returns holds expired plus index entries removed."""
        check_time("now", now)
        self._c.epoch.guard()
        tenants = await self._c.tenants()
        count, failed = 0, None
        for i in range(0, len(tenants), SWEEP_PARALLEL):
            batch = tenants[i : i + SWEEP_PARALLEL]
            done = await asyncio.gather(
                *(self._sweep_tenant(t, now) for t in batch), return_exceptions=True
            )
            for result in done:
                if isinstance(result, StoreUnavailable):
                    failed = failed or result  # one shard down: sweep the others anyway
                elif isinstance(result, BaseException):
                    raise result
                else:
                    count += result
        if failed is not None:
            raise failed
        return count

    async def _sweep_tenant(self, tenant: str, now: float) -> int:
        base, count = self._c.base(tenant), 0
        keys = [f"{base}:leases", f"{base}:running"]
        cutoff = f(now - self.workflow_ttl_s)
        args = [base, f(now), str(self.workflow_ttl_s), cutoff, str(SWEEP_BATCH)]
        while True:
            reply = await self._c.tenant_script("sweep_tenant", tenant, keys, args, fenced=False)
            count += int(reply[1]) + int(reply[2])
            if not int(reply[3]):
                return count
