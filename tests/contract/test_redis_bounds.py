"""RedisStore and out-of-range or bad values: a script checks its numeric arguments
before it writes anything (a Lua script that fails half-way keeps its writes), and no
stored value, however huge or non-numeric, makes a script or a read fail."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from accounting.store import redis as redis_store
from accounting.store import redis_workflows
from accounting.store.redis import RedisStore
from tests.contract.conftest import REDIS_DB
from tests.contract.helpers import NOW, budget, charge, rq
from tests.support.redis_server import RedisServer

WF = "{team-a}:wf:wf-1"


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    opened = RedisStore(redis_server.url_for(REDIS_DB), prefix=f"b{uuid.uuid4().hex[:8]}:")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url_for(REDIS_DB))
    try:
        yield client
    finally:
        client.close()


def _snapshot(raw: redis.Redis, prefix: str) -> dict[bytes, Any]:
    """Every key of the store and what it holds (TTLs aside)."""
    found: dict[bytes, Any] = {}
    for key in raw.scan_iter(f"{prefix}*"):
        kind = raw.type(key)
        if kind == b"hash":
            found[key] = raw.hgetall(key)
        elif kind == b"zset":
            found[key] = raw.zrange(key, 0, -1, withscores=True)
        elif kind == b"stream":
            found[key] = raw.xlen(key)
        elif kind == b"set":
            found[key] = raw.smembers(key)
        else:
            found[key] = raw.get(key)
    return found


async def _still_answers(store: RedisStore) -> None:
    assert await store.get_workflow("team-a", "wf-1", NOW + 1) is not None
    assert [s.workflow_id for s in await store.list_stalled(NOW + 2)] == ["wf-1"]
    capped = await store.set_workflow_cap("team-a", "wf-1", 10**12, 10**6, NOW + 1)
    assert capped is not None and (capped.cap_micros, capped.cap_tokens) == (10**12, 10**6)
    done = await store.complete_workflow("team-a", "wf-1", NOW + 1)
    assert done is not None and done.status == "completed"


SCRIPT_BAD_REQUESTS: list[dict[str, Any]] = [
    {"cap_tokens": 2**63},
    {"cap_micros": 9223372036855 * 10**6},
    {"amount_micros": 2**64},
    {"tokens": 2**64},  # used to leave reserved_micros raised with no hold behind it
    {"amount_micros": 2**53},
    {"now": float("inf"), "key_budget": None},
    {"key_budget": budget(2**70)},
]


@pytest.mark.parametrize("overrides", SCRIPT_BAD_REQUESTS)
async def test_the_reserve_script_refuses_bad_arguments_before_writing(
    store: RedisStore, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any]
) -> None:
    await store.reserve(rq(5, cap_micros=10**9, key_budget=budget(10**9)))
    before = _snapshot(raw, store.prefix)
    monkeypatch.setattr(redis_store, "validate_request", lambda req: None)  # past Python
    kwargs = {"key_budget": budget(10**9), **overrides}
    kwargs["amount"] = kwargs.pop("amount_micros", 5)
    with pytest.raises(ValueError, match="nothing was written"):
        await store.reserve(rq(**kwargs))
    assert _snapshot(raw, store.prefix) == before
    await _still_answers(store)


async def test_the_other_scripts_refuse_bad_arguments_before_writing(
    store: RedisStore, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = await store.reserve(rq(5, cap_micros=10**9))
    before = _snapshot(raw, store.prefix)
    monkeypatch.setattr(redis_store, "validate_settle", lambda *args: None)
    monkeypatch.setattr(redis_workflows, "validate_caps", lambda *args: None)
    with pytest.raises(ValueError, match="nothing was written"):
        await store.settle(got.reservation, charge(2**64), NOW + 1)
    with pytest.raises(ValueError, match="nothing was written"):
        await store.settle(got.reservation, charge(1, tokens={"input": 2**64}), NOW + 1)
    with pytest.raises(ValueError, match="nothing was written"):
        await store.set_workflow_cap("team-a", "wf-1", 2**63, None, NOW)
    assert _snapshot(raw, store.prefix) == before
    settled = await store.settle(got.reservation, charge(4), NOW + 1)
    assert settled.workflow is not None and settled.workflow.spent_micros == 4
    await _still_answers(store)


async def test_huge_and_non_numeric_stored_values_read_back(
    store: RedisStore, raw: redis.Redis
) -> None:
    """Values no write of this version leaves, in a workflow with a hold that expires
    (its sweep increments them) and one that settles: reads and writes go on."""
    live = await store.reserve(rq(10, lease_s=5.0))
    expiring = await store.reserve(rq(7, lease_s=1.0))
    raw.hset(
        f"{store.prefix}{WF}",
        mapping={
            "spent_micros": "9" * 30, "calls": "abc", "tk:input": "1e400", "retries": "-",
            "started_at": "nope", "cap_tokens": "lots",
        },
    )  # fmt: skip
    state = await store.get_workflow("team-a", "wf-1", NOW + 2)
    assert state is not None
    # the sweep's increment saturated the counter that no longer fit in 64 bits
    assert state.spent_micros == 2**63 - 1024 and state.expired_micros == 7
    assert (state.calls, state.retries, state.started_at) == (0, 0, 0.0)
    assert state.cap_tokens == 0  # a cap that is no number fails closed
    assert state.tokens_by_kind == {"input": 2**63 - 1}
    stalled = await store.list_stalled(NOW + 100)
    assert [s.workflow_id for s in stalled] == ["wf-1"]
    settled = await store.settle(live.reservation, charge(3, tokens={"input": 1}), NOW + 3)
    assert settled.workflow is not None and settled.workflow.calls == 1
    assert settled.workflow.reserved_micros == 0
    late = await store.settle(expiring.reservation, charge(2), NOW + 4)
    assert late.workflow is not None and late.workflow.expired_micros == 0
    raw.hset(f"{store.prefix}{WF}", "spent_micros", str(10**25))  # beyond 64 bits, as is
    state = await store.get_workflow("team-a", "wf-1", NOW + 5)
    assert state is not None and state.spent_micros == 10**25


async def test_a_bad_hold_or_index_entry_does_not_fail_reads(
    store: RedisStore, raw: redis.Redis
) -> None:
    got = await store.reserve(rq(10, lease_s=1.0))
    hold = f"{store.prefix}{{team-a}}:h:{got.reservation.id}"
    raw.hdel(hold, "amount")
    raw.hset(hold, "tokens", "garbage")
    running = f"{store.prefix}{{team-a}}:running"
    raw.zadd(running, {"no-such-workflow": 1.0})
    state = await store.get_workflow("team-a", "wf-1", NOW + 2)  # expires the bad hold
    assert state is not None and state.expired_holds == 1
    assert [s.workflow_id for s in await store.list_stalled(NOW + 100)] == ["wf-1"]
    assert raw.zscore(running, "no-such-workflow") is None  # dropped
