"""Store contract: idempotency claims, replays, conflicts, leases."""

from __future__ import annotations

from accounting.store.base import Store
from tests.contract.helpers import NOW

KEY = "team-a"
SCOPE = "chat:order-42"
RECORD = b'\x00\xff{"id": 1}\r\n' * 3


async def test_claim_then_in_flight_then_replay(store: Store) -> None:
    claim = await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW)
    assert claim.outcome == "claimed" and claim.token
    busy = await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW + 1)
    assert (busy.outcome, busy.lease_until, busy.token) == ("in_flight", NOW + 30.0, None)
    assert await store.idem_complete(KEY, SCOPE, claim.token, RECORD, 600.0, NOW + 2)
    replay = await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW + 3)
    assert (replay.outcome, replay.record) == ("replay", RECORD)
    # a completed record cannot be completed again, even by its owner
    assert not await store.idem_complete(KEY, SCOPE, claim.token, b"other", 600.0, NOW + 4)
    assert (await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW + 5)).record == RECORD


async def test_a_different_fingerprint_conflicts(store: Store) -> None:
    claim = await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW)
    assert claim.token is not None
    assert (await store.idem_claim(KEY, SCOPE, "fp-2", 30.0, NOW + 1)).outcome == "conflict"
    assert await store.idem_complete(KEY, SCOPE, claim.token, RECORD, 600.0, NOW + 2)
    assert (await store.idem_claim(KEY, SCOPE, "fp-2", 30.0, NOW + 3)).outcome == "conflict"


async def test_completed_records_expire_at_their_ttl(store: Store) -> None:
    claim = await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW)
    assert claim.token is not None
    assert await store.idem_complete(KEY, SCOPE, claim.token, RECORD, 100.0, NOW + 10)
    assert (await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW + 109)).outcome == "replay"
    fresh = await store.idem_claim(KEY, SCOPE, "fp-2", 30.0, NOW + 110)
    assert fresh.outcome == "claimed" and fresh.token != claim.token


async def test_an_expired_lease_can_be_claimed_again(store: Store) -> None:
    first = await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW)
    assert first.token is not None
    assert (await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW + 29.9)).outcome == "in_flight"
    second = await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW + 30)
    assert second.outcome == "claimed" and second.token and second.token != first.token
    # the first holder lost its claim: it can neither complete nor release it
    assert not await store.idem_complete(KEY, SCOPE, first.token, b"late", 600.0, NOW + 31)
    await store.idem_release(KEY, SCOPE, first.token)
    busy = await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW + 32)
    assert (busy.outcome, busy.lease_until) == ("in_flight", NOW + 60.0)
    assert await store.idem_complete(KEY, SCOPE, second.token, RECORD, 600.0, NOW + 33)
    assert (await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW + 34)).record == RECORD


async def test_complete_with_a_wrong_token_is_refused(store: Store) -> None:
    claim = await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW)
    assert not await store.idem_complete(KEY, SCOPE, "not-the-token", RECORD, 600.0, NOW + 1)
    assert not await store.idem_complete(KEY, "chat:unknown", "x", RECORD, 600.0, NOW + 1)
    assert (await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW + 2)).outcome == "in_flight"
    assert claim.token is not None
    assert await store.idem_complete(KEY, SCOPE, claim.token, RECORD, 600.0, NOW + 3)


async def test_release_frees_the_scope(store: Store) -> None:
    claim = await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW)
    assert claim.token is not None
    await store.idem_release(KEY, SCOPE, "someone-else")
    assert (await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW + 1)).outcome == "in_flight"
    await store.idem_release(KEY, SCOPE, claim.token)
    again = await store.idem_claim(KEY, SCOPE, "fp-2", 30.0, NOW + 2)
    assert again.outcome == "claimed" and again.token != claim.token
    await store.idem_release(KEY, "chat:never-claimed", "x")  # a no-op


async def test_release_does_not_drop_a_completed_record(store: Store) -> None:
    claim = await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW)
    assert claim.token is not None
    assert await store.idem_complete(KEY, SCOPE, claim.token, RECORD, 600.0, NOW + 1)
    await store.idem_release(KEY, SCOPE, claim.token)
    assert (await store.idem_claim(KEY, SCOPE, "fp-1", 30.0, NOW + 2)).outcome == "replay"


async def test_scopes_are_independent(store: Store) -> None:
    a = await store.idem_claim(KEY, "chat:k", "fp", 30.0, NOW)
    b = await store.idem_claim(KEY, "embeddings:k", "fp", 30.0, NOW)
    assert a.outcome == b.outcome == "claimed" and a.token != b.token


async def test_the_same_scope_under_another_key_is_another_record(store: Store) -> None:
    mine = await store.idem_claim("team-a", "chat:k", "fp", 30.0, NOW)
    assert mine.token is not None
    assert await store.idem_complete("team-a", "chat:k", mine.token, RECORD, 600.0, NOW + 1)
    theirs = await store.idem_claim("team-b", "chat:k", "fp-other", 30.0, NOW + 2)
    assert theirs.outcome == "claimed" and theirs.token != mine.token
    await store.idem_release("team-b", "chat:k", mine.token)  # not theirs to release
    assert (await store.idem_claim("team-a", "chat:k", "fp", 30.0, NOW + 3)).record == RECORD
