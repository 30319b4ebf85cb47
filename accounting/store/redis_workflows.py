"""``RedisStore``'s methods for a workflow's life off the money path (a base class,
so the store itself keeps the request path): status, completion, cancellation,
heartbeats, admin caps, the listings, the cancel poll, and the costs of completed
workflows by kind. Scripts: ``redis_scripts_workflows``; key layout:
``redis_scripts``. What spans tenants (the stalled listing and count, the cancel
poll) is one single-slot read per tenant or workflow; the costs by kind live in the
store-wide slot."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, cast
from urllib.parse import unquote

from accounting.store.base import Outcome, WorkflowState
from accounting.store.common import (
    KIND_COSTS_KEPT,
    MAX_NAME_CHARS,
    MAX_STORE_INT,
    check_heartbeat,
    check_kind_cost,
    check_limit,
    check_listing,
    check_outcome,
    check_text,
    check_time,
    clip_error,
    stored_int,
    validate_caps,
)
from accounting.store.guardrails import median
from accounting.store.redis_client import ScriptClient
from accounting.store.redis_codec import f, opt, state, store_key, tenant_of

LIST_SCAN = 200  # index entries one listing script looks at


class RedisWorkflows:
    """Mixed into ``RedisStore``; see ``accounting.store.base.Store`` for the contract."""

    _c: ScriptClient
    prefix: str
    workflow_ttl_s: int

    async def get_workflow(self, key: str, workflow_id: str, now: float) -> WorkflowState | None:
        check_time("now", now)
        return await self._status(tenant_of(key), key, workflow_id, now)

    async def _status(
        self, tenant: str, key: str, workflow_id: str, now: float
    ) -> WorkflowState | None:
        """The workflow after sweeping its expired holds (not fenced: a late sweep only
        expires what had run out by ``now``)."""
        base = self._c.base(tenant)
        keys = [f"{base}:wf:{workflow_id}", f"{base}:wh:{workflow_id}"]
        args = [base, f(now), str(self.workflow_ttl_s)]
        reply = await self._c.tenant_script("status", tenant, keys, args, fenced=False)
        return state(key, workflow_id, reply[1])

    async def _life(
        self, script: str, key: str, workflow_id: str, now: float, extra: list[str]
    ) -> WorkflowState | None:
        """Run a workflow life script (fenced); see ``redis_scripts_workflows``."""
        tenant = tenant_of(key)
        base, wid = self._c.base(tenant), workflow_id
        keys = [
            f"{base}:wf:{wid}", f"{base}:wh:{wid}", f"{base}:running", f"{base}:wfs",
            f"{base}:fp:{wid}", f"{base}:fpo:{wid}",
        ]  # fmt: skip
        ttl_s = str(self.workflow_ttl_s)
        args = [base, f(now), ttl_s, wid, ttl_s, *extra]
        reply = await self._c.tenant_script(script, tenant, keys, args, fenced=True)
        return state(key, workflow_id, reply[1])

    async def complete_workflow(
        self,
        key: str,
        workflow_id: str,
        now: float,
        outcome: Outcome = "succeeded",
        error: str | None = None,
    ) -> WorkflowState | None:
        check_time("now", now)
        check_outcome(outcome)
        clipped = clip_error(error)
        extra = [outcome, "0" if clipped is None else "1", clipped or ""]
        return await self._life("complete", key, workflow_id, now, extra)

    async def cancel_workflow(
        self, key: str, workflow_id: str, now: float, reason: str = "cancelled"
    ) -> WorkflowState | None:
        check_time("now", now)
        check_text("reason", reason, MAX_NAME_CHARS)
        return await self._life("cancel", key, workflow_id, now, [reason])

    async def heartbeat(
        self, key: str, workflow_id: str, now: float, step: str | None, progress: float | None
    ) -> WorkflowState | None:
        check_heartbeat(now, step, progress)
        extra = ["0" if step is None else "1", step or "", "" if progress is None else f(progress)]
        return await self._life("heartbeat", key, workflow_id, now, extra)

    async def set_workflow_cap(
        self, key: str, workflow_id: str, cap_micros: int | None, cap_tokens: int | None, now: float
    ) -> WorkflowState | None:
        validate_caps(cap_micros, cap_tokens)
        tenant = tenant_of(key)
        keys = [f"{self._c.base(tenant)}:wf:{workflow_id}"]
        args = [opt(cap_micros), opt(cap_tokens)]
        reply = await self._c.tenant_script("set_cap", tenant, keys, args, fenced=True)
        return state(key, workflow_id, reply[1])

    # -- listings -----------------------------------------------------------------
    async def list_workflows(
        self, key: str, status: str, idle_before: float, after: str | None, limit: int
    ) -> tuple[list[WorkflowState], str | None]:
        """Pages through the tenant's workflow index (``B:wfs``), script by script,
        until ``limit`` + 1 matched (there is a next page) or the index ended."""
        check_listing(status, idle_before, limit)
        tenant = tenant_of(key)
        base = self._c.base(tenant)
        found: list[WorkflowState] = []
        cursor: str | bytes = after or ""
        while True:
            want = min(MAX_STORE_INT, limit + 1 - len(found))
            args = [
                base, f(idle_before), str(self.workflow_ttl_s), status, f(idle_before),
                cursor, str(want), str(LIST_SCAN),
            ]  # fmt: skip
            reply = await self._c.tenant_script(
                "list_workflows", tenant, [f"{base}:wfs"], args, fenced=False
            )
            found += _states(key, reply[1])
            if len(found) > limit or reply[3] == b"1":
                break
            cursor = reply[2]
        page = found[:limit]
        return page, (page[-1].workflow_id if len(found) > limit else None)

    async def list_stalled(self, idle_before: float, limit: int = 100) -> list[WorkflowState]:
        """Oldest first, from each registered tenant's running index, each workflow
        after sweeping its holds that ran out by ``idle_before`` (there is no ``now``
        here; every hold expired so has truly run out)."""
        check_time("idle_before", idle_before)
        check_limit(limit)
        self._c.epoch.guard()
        found: list[WorkflowState] = []
        for tenant in await self._c.tenants():
            found += await self._stalled_of(tenant, idle_before, limit)
        found.sort(key=lambda s: (s.last_seen_at, s.key, s.workflow_id))
        return found[:limit]

    async def _stalled_of(self, tenant: str, idle_before: float, limit: int) -> list[WorkflowState]:
        """Up to ``limit`` of one tenant's stalled workflows, oldest first; index
        entries whose workflow expired are dropped."""
        running, key = f"{self._c.base(tenant)}:running", unquote(tenant)
        found: list[WorkflowState] = []
        offset = 0
        while len(found) < limit:
            pending = self._c.redis().zrangebyscore(
                running, "-inf", f"({f(idle_before)}", start=offset, num=limit
            )
            members = await self._c.do(cast(Awaitable[list[bytes]], pending))
            states, gone = await self._load_members(tenant, key, members, idle_before)
            found += [s for s in states if s.status == "running" and s.last_seen_at < idle_before]
            if gone:
                await self._c.do(self._c.redis().zrem(running, *gone))
            if len(members) < limit:
                break
            offset += len(members) - len(gone)
        return found[:limit]

    async def _load_members(
        self, tenant: str, key: str, members: list[bytes], now: float
    ) -> tuple[list[WorkflowState], list[bytes]]:
        """The workflows behind running-index members, and the members whose state
        expired (they are dropped from the index)."""
        states, gone = [], []
        for member in members:
            found = await self._status(tenant, key, member.decode(errors="replace"), now)
            if found is None:
                gone.append(member)
            else:
                states.append(found)
        return states, gone

    async def count_stalled(self, idle_before: float) -> int:
        """One pipeline of a ZCOUNT per registered tenant (on a cluster, one round trip
        per node)."""
        check_time("idle_before", idle_before)
        self._c.epoch.guard()
        tenants = await self._c.tenants()
        if not tenants:
            return 0
        pipe = self._c.redis().pipeline(transaction=False)
        for tenant in tenants:
            pipe.zcount(f"{self._c.base(tenant)}:running", "-inf", f"({f(idle_before)}")
        counts: list[int] = await self._c.do(pipe.execute())
        return sum(int(c) for c in counts)

    async def cancelled_among(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """One pipeline (one round trip): HEXISTS of each workflow's ``stop_reason``."""
        if not pairs:
            return set()
        self._c.epoch.guard()
        pipe = self._c.redis().pipeline(transaction=False)
        for key, wid in pairs:
            pipe.hexists(f"{self._c.base(tenant_of(key))}:wf:{wid}", "stop_reason")
        flags = await self._c.do(pipe.execute())
        return {pair for pair, flag in zip(pairs, flags, strict=True) if flag}

    # -- costs by kind ------------------------------------------------------------
    async def note_completed_cost(self, name: str, cost_micros: int, now: float) -> None:
        """One MULTI/EXEC of plain commands on the store-wide ``kind:<name>`` list and
        ``kinds`` set (one slot); both expire a workflow TTL after the last cost
        (``now`` is unused: Redis keeps time for TTLs)."""
        check_kind_cost(name, cost_micros, now)
        self._c.epoch.guard()
        kind, kinds = store_key(self.prefix, f"kind:{name}"), store_key(self.prefix, "kinds")
        pipe = self._c.redis().pipeline(transaction=True)
        pipe.lpush(kind, str(cost_micros))
        pipe.ltrim(kind, 0, KIND_COSTS_KEPT - 1)
        pipe.expire(kind, self.workflow_ttl_s)
        pipe.sadd(kinds, name)
        pipe.expire(kinds, self.workflow_ttl_s)
        await self._c.do(pipe.execute())

    async def kind_medians(self) -> dict[str, int]:
        """Two round trips: the kinds, then their lists (a kind whose list expired is
        dropped from the set)."""
        self._c.epoch.guard()
        kinds = store_key(self.prefix, "kinds")
        members = await self._c.do(cast(Awaitable[set[bytes]], self._c.redis().smembers(kinds)))
        names = sorted(m.decode(errors="replace") for m in members)
        if not names:
            return {}
        pipe = self._c.redis().pipeline(transaction=False)
        for name in names:
            pipe.lrange(store_key(self.prefix, f"kind:{name}"), 0, -1)
        lists: list[list[bytes]] = await self._c.do(pipe.execute())
        gone = [name for name, costs in zip(names, lists, strict=True) if not costs]
        if gone:
            await self._c.do(self._c.redis().srem(kinds, *gone))
        return {
            name: median([stored_int(c) for c in costs])
            for name, costs in zip(names, lists, strict=True)
            if costs
        }


def _states(key: str, found: list[Any]) -> list[WorkflowState]:
    """A listing script's ``{id, fields, ...}`` as states (an id with no fields left
    is skipped)."""
    states = []
    for i in range(0, len(found) - 1, 2):
        wid = found[i].decode(errors="replace") if isinstance(found[i], bytes) else str(found[i])
        got = state(key, wid, found[i + 1])
        if got is not None:
            states.append(got)
    return states
