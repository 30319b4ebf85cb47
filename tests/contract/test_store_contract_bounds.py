"""Store contract: the store-wide bounds (``MAX_STORE_INT``, ``MAX_DURATION_S``).

A value a store cannot keep exactly is refused with ValueError naming the field,
before anything is written: no workflow field changes, no hold, no key spend; and
the workflow keeps answering (status, stalled listing, completion, caps) afterwards.
The bounds themselves are kept exactly."""

from __future__ import annotations

import math
from typing import Any

import pytest

from accounting.errors import BudgetExceeded
from accounting.store.base import Charge, Reservation, Store
from accounting.store.common import (
    MAX_DURATION_S,
    MAX_STORE_INT,
    check_int,
    stored_float,
    stored_int,
)
from tests.contract.helpers import HOUR, NOW, budget, charge, rq

BAD_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("cap_tokens", {"cap_tokens": 2**63}),
    ("cap_micros", {"cap_micros": 9223372036855 * 10**6}),
    ("cap_micros", {"cap_micros": MAX_STORE_INT + 1}),
    ("amount_micros", {"amount": 2**64}),
    ("amount_micros", {"amount": MAX_STORE_INT + 1}),
    ("amount_micros", {"amount": -1}),
    ("amount_micros", {"amount": 1.5}),
    ("amount_micros", {"amount": True}),
    ("tokens", {"tokens": 2**64}),
    ("lease_s", {"lease_s": math.inf}),
    ("lease_s", {"lease_s": math.nan}),
    ("lease_s", {"lease_s": -1.0}),
    ("lease_s", {"lease_s": MAX_DURATION_S + 1}),
    ("now", {"now": math.nan}),
    ("limit_micros", {"key_budget": budget(2**70)}),
    ("period_s", {"key_budget": budget(1_000, period_s=0)}),
    ("period_s", {"key_budget": budget(1_000, period_s=2**60)}),
]


def _bad(overrides: dict[str, Any]) -> Any:
    kwargs = dict(overrides)
    return rq(
        kwargs.pop("amount", 5), key_budget=kwargs.pop("key_budget", budget(10_000)), **kwargs
    )


async def _still_answers(store: Store, at: float) -> None:
    """Every read and admin call on the workflow still works."""
    assert await store.get_workflow("team-a", "wf-1", at) is not None
    assert [s.workflow_id for s in await store.list_stalled(at + 1)] == ["wf-1"]
    capped = await store.set_workflow_cap("team-a", "wf-1", 10**12, None, at)
    assert capped is not None and capped.cap_micros == 10**12
    done = await store.complete_workflow("team-a", "wf-1", at)
    assert done is not None and done.status == "completed"


@pytest.mark.parametrize(("field", "overrides"), BAD_REQUESTS)
async def test_an_out_of_range_reserve_leaves_no_trace(
    store: Store, field: str, overrides: dict[str, Any]
) -> None:
    held = await store.reserve(rq(100, cap_micros=10_000, key_budget=budget(10_000)))
    before = await store.get_workflow("team-a", "wf-1", NOW)
    with pytest.raises(ValueError, match=field):
        await store.reserve(_bad(overrides))
    assert await store.get_workflow("team-a", "wf-1", NOW) == before
    spend = await store.key_spend("team-a", HOUR, NOW)
    assert (spend.spent_micros, spend.reserved_micros) == (0, 100)
    after = await store.settle(held.reservation, charge(40), NOW + 1)
    assert after.workflow is not None and after.workflow.spent_micros == 40
    assert after.workflow.reserved_micros == 0  # the only hold was the good one
    await _still_answers(store, NOW + 2)


async def test_the_bound_itself_is_kept_exactly(store: Store) -> None:
    top = MAX_STORE_INT
    got = await store.reserve(rq(top, tokens=top, cap_micros=top, cap_tokens=top))
    assert got.workflow is not None
    assert (got.workflow.reserved_micros, got.workflow.tokens_reserved) == (top, top)
    with pytest.raises(BudgetExceeded):  # 2**53 > 2**53 - 1, even in a Lua double
        await store.reserve(rq(1, tokens=0))
    tokens = {"input": top, "cached_input": top}
    settled = await store.settle(got.reservation, charge(top, tokens=tokens), NOW + 1)
    assert settled.workflow is not None
    assert (settled.workflow.spent_micros, settled.workflow.reserved_micros) == (top, 0)
    assert dict(settled.workflow.tokens_by_kind) == tokens
    assert settled.workflow.remaining_micros == 0


BAD_CHARGES: list[tuple[str, Charge]] = [
    ("cost_micros", charge(2**63)),
    ("cost_micros", charge(-1)),
    ("tokens", charge(1, tokens={"input": 2**64})),
    ("tokens", charge(1, tokens={"output": -3})),
    ("counted tokens", charge(1, tokens={"input": MAX_STORE_INT, "output": 1})),
]


@pytest.mark.parametrize(("field", "bad"), BAD_CHARGES)
async def test_an_out_of_range_settle_is_refused_before_anything_is_written(
    store: Store, field: str, bad: Charge
) -> None:
    got = await store.reserve(rq(100, key_budget=budget(10_000)))
    before = await store.get_workflow("team-a", "wf-1", NOW)
    with pytest.raises(ValueError, match=field):
        await store.settle(got.reservation, bad, NOW + 1)
    assert await store.get_workflow("team-a", "wf-1", NOW) == before
    # the hold is still live: the real settle applies (not taken as a repeat)
    after = await store.settle(got.reservation, charge(60), NOW + 2)
    assert after.workflow is not None and not after.orphan
    assert (after.workflow.spent_micros, after.workflow.reserved_micros) == (60, 0)
    spend = await store.key_spend("team-a", HOUR, NOW)
    assert (spend.spent_micros, spend.reserved_micros) == (60, 0)


async def test_a_forged_reservation_is_refused(store: Store) -> None:
    forged = Reservation("r-x", "team-a", "wf-1", 2**64, 1, None, NOW + 60, cap_micros=2**63)
    with pytest.raises(ValueError, match="amount_micros"):
        await store.settle(forged, charge(1), NOW)
    assert await store.get_workflow("team-a", "wf-1", NOW) is None


async def test_out_of_range_caps_and_durations_are_refused(store: Store) -> None:
    await store.reserve(rq(1, cap_micros=500, cap_tokens=50))
    with pytest.raises(ValueError, match="cap_micros"):
        await store.set_workflow_cap("team-a", "wf-1", 2**63, None, NOW)
    with pytest.raises(ValueError, match="cap_tokens"):
        await store.set_workflow_cap("team-a", "wf-1", None, -1, NOW)
    state = await store.get_workflow("team-a", "wf-1", NOW)
    assert state is not None and (state.cap_micros, state.cap_tokens) == (500, 50)
    with pytest.raises(ValueError, match="lease_s"):
        await store.idem_claim("team-a", "s", "fp", math.inf, NOW)
    claim = await store.idem_claim("team-a", "s", "fp", 30.0, NOW)
    assert claim.token is not None
    with pytest.raises(ValueError, match="ttl_s"):
        await store.idem_complete("team-a", "s", claim.token, b"x", math.nan, NOW)
    assert await store.idem_complete("team-a", "s", claim.token, b"x", 60.0, NOW)
    with pytest.raises(ValueError, match="period_s"):
        await store.key_spend("team-a", 0, NOW)
    with pytest.raises(ValueError, match="idle_before"):
        await store.list_stalled(math.nan)
    with pytest.raises(ValueError, match="now"):
        await store.get_workflow("team-a", "wf-1", math.inf)


def test_the_checks_name_the_field_and_the_range() -> None:
    with pytest.raises(ValueError, match=r"cap_tokens must be in \[0, 9007199254740991\]"):
        check_int("cap_tokens", 2**63)
    with pytest.raises(ValueError, match="tokens must be an integer, got float"):
        check_int("tokens", 1.0)


@pytest.mark.parametrize(
    ("raw", "want"),
    [(b"12", 12), (b"99999999999999999999999", 10**23 - 1), (b"-4", -4), (b"1.5e3", 1500),
     (b"abc", 0), (b"nan", 0), (b"inf", 2**63 - 1), (None, 0), (7.9, 7), ("9" * 5000, 2**63 - 1)],
)  # fmt: skip
def test_stored_values_always_read_back(raw: object, want: int) -> None:
    assert stored_int(raw) == want


def test_stored_times_always_read_back() -> None:
    assert stored_float(b"1700000000.5") == 1_700_000_000.5
    assert stored_float(b"nope") == stored_float(b"inf") == stored_float(None) == 0.0
