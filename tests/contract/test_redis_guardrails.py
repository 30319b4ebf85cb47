"""RedisStore and the workflow guardrails: the keys they add (a tenant's under its
hash tag, with the workflow's TTL; the kind costs global), the bound on loop counts,
the tenant's workflow index (trimmed as listings meet expired workflows, paged across
scripts), argument checks before any write, and bad stored values."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from accounting.errors import GuardrailRefused
from accounting.store import redis as redis_store
from accounting.store import redis_workflows
from accounting.store.base import ReserveRequest
from accounting.store.redis import RedisStore
from tests.contract.conftest import REDIS_DB
from tests.contract.helpers import NOW, rq
from tests.support.redis_server import RedisServer

TTL = 5_000


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    prefix = f"g{uuid.uuid4().hex[:8]}:"
    opened = RedisStore(redis_server.url_for(REDIS_DB), prefix=prefix, workflow_ttl_s=TTL)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url_for(REDIS_DB), decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def _loop(fp: str, at: float = 0, **kwargs: Any) -> ReserveRequest:
    return rq(1, now=NOW + at, new_call=True, fingerprint=fp, max_identical=2, **kwargs)


async def test_the_new_keys_live_under_the_tenant_with_the_workflow_ttl(
    store: RedisStore, raw: redis.Redis
) -> None:
    await store.reserve(_loop("f", timeout_s=60.0, max_calls=5, name="triage"))
    await store.heartbeat("team-a", "wf-1", NOW + 1, "step", 10.0)
    await store.cancel_workflow("team-a", "wf-1", NOW + 2)
    await store.complete_workflow("team-a", "wf-1", NOW + 3, "failed", "boom")
    await store.note_completed_cost("triage", 7, NOW)
    base = f"{store.prefix}{{team-a}}"
    keys = {str(k) for k in raw.keys(f"{store.prefix}*")}
    for name in (f"{base}:fp:wf-1", f"{base}:fpo:wf-1", f"{base}:wfs", f"{base}:wf:wf-1"):
        assert name in keys
        assert TTL - 5 <= raw.ttl(name) <= TTL
    untagged = {k for k in keys if not k.startswith(base)}
    store_wide = ("epoch", "tenants", "kind:triage", "kinds")
    assert untagged == {f"{store.prefix}{{%store}}:{name}" for name in store_wide}
    kind = f"{store.prefix}{{%store}}:kind:triage"
    assert raw.lrange(kind, 0, -1) == ["7"]
    assert TTL - 5 <= raw.ttl(kind) <= TTL
    assert raw.zrange(f"{base}:wfs", 0, -1) == ["wf-1"]


async def test_loop_counts_are_bounded(store: RedisStore, raw: redis.Redis) -> None:
    for i in range(300):
        await store.reserve(_loop(f"f{i}", i))
    base = f"{store.prefix}{{team-a}}"
    counts = raw.hgetall(f"{base}:fp:wf-1")
    assert sorted(counts) == sorted(f"f{i}" for i in range(44, 300))
    assert raw.zcard(f"{base}:fpo:wf-1") == 256


async def test_a_listing_drops_index_entries_of_expired_workflows(
    store: RedisStore, raw: redis.Redis
) -> None:
    for wid in ("a", "b", "c"):
        await store.reserve(rq(1, workflow_id=wid))
    base = f"{store.prefix}{{team-a}}"
    raw.delete(f"{base}:wf:b")  # as if its TTL ran out
    page, after = await store.list_workflows("team-a", "running", NOW, None, 10)
    assert ([s.workflow_id for s in page], after) == (["a", "c"], None)
    assert raw.zrange(f"{base}:wfs", 0, -1) == ["a", "c"]
    assert await store.cancelled_among([("team-a", "b")]) == set()


async def test_a_listing_goes_on_across_scripts(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_workflows, "LIST_SCAN", 2)
    for i in range(9):
        await store.reserve(rq(1, workflow_id=f"w{i}"))
        if i % 3:
            await store.complete_workflow("team-a", f"w{i}", NOW)
    pages, after = [], None
    while True:
        page, after = await store.list_workflows("team-a", "running", NOW, after, 2)
        pages.append([s.workflow_id for s in page])
        if after is None:
            break
    assert pages == [["w0", "w3"], ["w6"]]
    page, after = await store.list_workflows("team-a", "completed", NOW, "w4", 100)
    assert ([s.workflow_id for s in page], after) == (["w5", "w7", "w8"], None)


async def test_the_scripts_refuse_bad_guardrail_arguments_before_writing(
    store: RedisStore, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.reserve(_loop("f", timeout_s=60.0, max_calls=5))
    base = f"{store.prefix}{{team-a}}"
    before = {k: raw.dump(k) for k in raw.keys(f"{base}:*")}
    monkeypatch.setattr(redis_store, "validate_request", lambda req: None)
    monkeypatch.setattr(redis_workflows, "check_heartbeat", lambda *args: None)
    bad_args: list[dict[str, Any]] = [
        {"timeout_s": float("inf")}, {"max_calls": 2**64}, {"max_identical": 2**64},
    ]  # fmt: skip
    for bad in bad_args:
        with pytest.raises(ValueError, match="nothing was written"):
            await store.reserve(rq(1, now=NOW + 1, new_call=True, fingerprint="f", **bad))
    with pytest.raises(ValueError, match="nothing was written"):
        await store.heartbeat("team-a", "wf-1", NOW + 1, None, float("nan"))
    assert {k: raw.dump(k) for k in raw.keys(f"{base}:*")} == before


async def test_bad_stored_guardrail_values_read_back(store: RedisStore, raw: redis.Redis) -> None:
    await store.reserve(_loop("f", max_calls=5))
    base = f"{store.prefix}{{team-a}}"
    raw.hset(
        f"{base}:wf:wf-1",
        mapping={"requests": "abc", "max_calls": "lots", "outcome": "maybe", "progress": "p"},
    )
    raw.hset(f"{base}:fp:wf-1", "f", "junk")
    state = await store.get_workflow("team-a", "wf-1", NOW)
    assert state is not None
    assert (state.requests, state.max_calls, state.outcome, state.progress) == (0, 0, None, 0.0)
    with pytest.raises(GuardrailRefused, match="call_limit"):  # a cap that is no number: 0
        await store.reserve(_loop("f", 1))
    raw.hdel(f"{base}:wf:wf-1", "max_calls")
    got = await store.reserve(_loop("f", 2))
    assert got.workflow is not None and got.workflow.requests == 1
    raw.hset(f"{base}:wf:wf-1", "deadline_at", "never")
    with pytest.raises(GuardrailRefused, match="expired"):  # fails closed
        await store.reserve(rq(1, now=NOW + 3))
