"""Store contract, property based: random reserve/settle/expiry sequences against a
model in plain Python ints. Every value must match exactly and spent + reserved must
never exceed the caps (settles here never cost more than was held)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accounting.errors import BudgetExceeded
from accounting.store.base import Reservation, Store, WorkflowState
from tests.contract.conftest import StoreFactory
from tests.contract.helpers import NOW, budget, charge, rq

PERIOD = 10**9  # one key window for the whole run
Op = tuple[str, int, int, int]

_ops = st.one_of(
    st.tuples(st.just("reserve"), st.integers(0, 3 * 10**11), st.integers(0, 10**5),
              st.sampled_from([5, 10_000])),
    st.tuples(st.just("settle"), st.integers(0, 40), st.integers(0, 100), st.integers(0, 100)),
    st.tuples(st.just("advance"), st.integers(1, 20), st.just(0), st.just(0)),
)  # fmt: skip


@dataclass
class _Hold:
    res: Reservation
    state: str = "held"  # held | expired | settled


@dataclass
class _Model:
    cap: int
    cap_tokens: int | None
    limit: int
    spent: int = 0
    reserved: int = 0
    tokens_spent: int = 0
    tokens_reserved: int = 0
    expired_holds: int = 0
    expired_micros: int = 0
    calls: int = 0
    holds: list[_Hold] = field(default_factory=list)

    def sweep(self, now: float) -> None:
        for hold in self.holds:
            if hold.state == "held" and hold.res.expires_at <= now:
                amount, tokens = hold.res.amount_micros, hold.res.tokens
                hold.state = "expired"
                self.spent, self.reserved = self.spent + amount, self.reserved - amount
                self.tokens_spent += tokens
                self.tokens_reserved -= tokens
                self.expired_holds += 1
                self.expired_micros += amount

    def refusal(self, amount: int, tokens: int) -> tuple[str, str, int, int, int] | None:
        committed = self.spent + self.reserved
        committed_tokens = self.tokens_spent + self.tokens_reserved
        if committed + amount > self.cap:
            return ("workflow", "usd", self.cap, committed, amount)
        if self.cap_tokens is not None and committed_tokens + tokens > self.cap_tokens:
            return ("workflow", "tokens", self.cap_tokens, committed_tokens, tokens)
        if committed + amount > self.limit:
            return ("key", "usd", self.limit, committed, amount)
        return None

    def settle(self, hold: _Hold, cost: int, counted: int) -> None:
        amount, tokens = hold.res.amount_micros, hold.res.tokens
        if hold.state == "settled":
            return
        if hold.state == "held":
            self.reserved -= amount
            self.tokens_reserved -= tokens
        else:
            self.spent -= amount
            self.tokens_spent -= tokens
            self.expired_micros -= amount
        hold.state = "settled"
        self.spent += cost
        self.tokens_spent += counted
        self.calls += 1

    def check(self, state: WorkflowState) -> None:
        got = (
            state.spent_micros, state.reserved_micros, state.tokens_spent,
            state.tokens_reserved, state.expired_holds, state.expired_micros, state.calls,
        )  # fmt: skip
        want = (
            self.spent, self.reserved, self.tokens_spent, self.tokens_reserved,
            self.expired_holds, self.expired_micros, self.calls,
        )  # fmt: skip
        assert got == want
        assert all(type(value) is int for value in got)
        assert state.spent_micros + state.reserved_micros <= self.cap
        if self.cap_tokens is not None:
            assert state.tokens_spent + state.tokens_reserved <= self.cap_tokens


async def _step(store: Store, model: _Model, op: Op, now: float) -> float:
    kind, a, b, c = op
    if kind == "advance":
        return now + a
    if kind == "reserve":
        model.sweep(now)
        expected = model.refusal(a, b)
        req = rq(a, tokens=b, lease_s=float(c), now=now, cap_micros=model.cap,
                 cap_tokens=model.cap_tokens, key_budget=budget(model.limit, PERIOD))  # fmt: skip
        try:
            got = await store.reserve(req)
        except BudgetExceeded as err:
            assert (err.scope, err.unit, err.limit, err.committed, err.needed) == expected
            event(f"refused: {err.scope} {err.unit}")
        else:
            assert expected is None
            model.holds.append(_Hold(got.reservation))
            model.reserved += a
            model.tokens_reserved += b
    elif model.holds:
        hold = model.holds[a % len(model.holds)]
        cost = hold.res.amount_micros * b // 100
        used_input = hold.res.tokens * c // 100
        used = {"input": used_input, "output": (hold.res.tokens - used_input) // 2,
                "cached_input": used_input // 3}  # fmt: skip
        event(f"settle a {hold.state} hold")
        await store.settle(hold.res, charge(cost, tokens=used), now)
        model.settle(hold, cost, used["input"] + used["output"])
    return now


async def _play(store: Store, model: _Model, ops: list[Op]) -> None:
    await store.open()
    try:
        now = NOW
        for op in ops:
            now = await _step(store, model, op, now)
            model.sweep(now)  # reading a workflow first expires its holds that ran out
            state = await store.get_workflow("team-a", "wf-1", now)
            if state is not None:
                model.check(state)
            spend = await store.key_spend("team-a", PERIOD, now)
            assert (spend.spent_micros, spend.reserved_micros) == (model.spent, model.reserved)
    finally:
        await store.close()


@settings(
    max_examples=int(os.environ.get("STORE_PROPERTY_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cap=st.integers(0, 6 * 10**11) | st.integers(10**12, 3 * 10**12),
    cap_tokens=st.none() | st.integers(10**4, 3 * 10**5),
    limit=st.integers(0, 6 * 10**11) | st.integers(10**12, 4 * 10**12),
    ops=st.lists(_ops, max_size=30),
)
def test_random_sequences_match_the_model(
    store_factory: StoreFactory, cap: int, cap_tokens: int | None, limit: int, ops: list[Op]
) -> None:
    store = store_factory(store_factory.fresh_namespace())
    asyncio.run(_play(store, _Model(cap, cap_tokens, limit), ops))
