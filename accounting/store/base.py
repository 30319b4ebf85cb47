"""The Store seam: every piece of shared, durable state goes through this protocol.

Two implementations keep one contract (tests/contract runs the same suite on both):
``SqliteStore`` (embedded default, durable, one writer thread so the event loop never
blocks) and ``RedisStore`` (shared by replicas; every read-modify-write is one Lua
script). Every method takes ``now`` (unix seconds) from the caller so leases and
expiry are driven by an injected clock.

Timeouts are honest: an operation the store gave up on (it raised StoreUnavailable
because Redis was paused or the disk wedged) never takes effect later. Each store
fences its writes by real elapsed time (Redis: a deadline the script checks against
the server's clock; SQLite: a deadline the writer thread checks before running it).

Money is integer micro-USD throughout.

Bounds (``common.MAX_STORE_INT``, ``common.MAX_DURATION_S``): every amount, token
count, cap and limit is an int in ``[0, 2**53 - 1]`` (Lua compares doubles, exact up
to 2**53), every lease and record TTL finite and at most ten years, every time
finite. A call outside them raises ValueError naming the field, before anything is
written; a value already stored that is out of range or no number at all is read
back without failing (``common.stored_int``).

Reservations and leases: ``reserve`` holds the worst case of one upstream attempt
against the workflow's cap, the workflow's token cap and the key's periodic budget,
all or nothing. ``settle`` replaces the hold by the actual charge. A hold whose lease
ran out (its replica died) is *counted as spent at its reserved amount* the next time
anything reads or reserves against that workflow or key, and by the periodic
``sweep``: the upstream may have billed it and we cannot know, so the cap stays
safe. It is visible as ``expired_holds`` / ``expired_micros``; a late ``settle`` of
an expired hold corrects the spend to the actual charge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from accounting.limits import Limiter

WorkflowStatus = Literal["running", "completed", "cancelled"]
Outcome = Literal["succeeded", "failed"]
TOKEN_KINDS = ("input", "output", "cached_input", "partial_output")


@dataclass(frozen=True, slots=True)
class KeyBudget:
    limit_micros: int
    period_s: int  # fixed windows aligned to the unix epoch: start = now // period * period


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    key: str  # the gateway key's name: the tenant scope of every workflow id
    workflow_id: str | None
    amount_micros: int  # worst case cost of this attempt
    tokens: int  # worst case tokens of this attempt (for token caps)
    lease_s: float  # the hold expires at now + lease_s
    now: float
    cap_micros: int | None = None  # X-Workflow-Budget-Usd: sets the cap if new, may lower it
    cap_tokens: int | None = None  # X-Workflow-Budget-Tokens: same rule
    step: str | None = None  # X-Workflow-Step: recorded as the current step
    key_budget: KeyBudget | None = None
    # Workflow guardrails (see ``Store.reserve``): each set by the first request that
    # names it, lowered (never raised) by a later one, like the caps.
    timeout_s: float | None = None  # X-Workflow-Timeout-S: deadline = started_at + this
    max_calls: int | None = None  # X-Workflow-Max-Calls: requests (not attempts)
    name: str | None = None  # X-Workflow-Name: the workflow's kind (set once)
    # This reservation begins a request (its first attempt): it counts as a call, and
    # for the loop guard its ``fingerprint`` (absent with an Idempotency-Key).
    new_call: bool = False
    fingerprint: str | None = None
    max_identical: int = 0  # the loop guard's threshold; 0: off


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    key: str
    workflow_id: str | None
    amount_micros: int
    tokens: int
    period_start: int | None  # the key budget window held against, if any
    expires_at: float
    # The caps the reserving request carried: a settle that finds its hold and
    # workflow gone (a store that lost its data) re-creates them no looser than this.
    cap_micros: int | None = None
    cap_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Charge:
    """What one upstream attempt really cost."""

    cost_micros: int
    tokens: Mapping[str, int] = field(default_factory=dict)  # by kind, see TOKEN_KINDS
    model: str = ""
    request_id: str = ""
    sent: bool = True  # the attempt reached the upstream (counts as a call)
    partial: bool = False  # a stream cut off: part of the charge is estimated
    is_retry: bool = False
    is_fallback: bool = False
    # Which charging rule produced ``cost_micros`` (kept in the ledger): ``reported``
    # (the provider's final usage), ``received`` (a stream that provably stopped:
    # prompt + what arrived), ``drained`` (an abandoned answer read to its end),
    # ``worst_case`` (unknowable: the hold's amount), ``refused`` (an error answer).
    rule: str = "reported"


@dataclass(frozen=True, slots=True)
class WorkflowState:
    key: str
    workflow_id: str
    cap_micros: int | None
    cap_tokens: int | None
    spent_micros: int
    reserved_micros: int
    tokens_spent: int
    tokens_reserved: int
    tokens_by_kind: Mapping[str, int]
    calls: int
    retries: int
    fallbacks: int
    partial_streams: int
    expired_holds: int
    expired_micros: int
    started_at: float
    last_seen_at: float
    step: str | None
    status: WorkflowStatus
    completed_at: float | None
    # Guardrails and what the workflow said of itself (defaults: none set).
    deadline_at: float | None = None  # started_at + X-Workflow-Timeout-S
    max_calls: int | None = None
    requests: int = 0  # calls as X-Workflow-Max-Calls counts them (a request, retries in)
    name: str | None = None  # its kind (X-Workflow-Name)
    cancelled_at: float | None = None
    stop_reason: str | None = None  # cancelled | cost_anomaly: later requests refused
    outcome: Outcome | None = None  # given by /complete
    error: str | None = None  # given by /complete
    progress: float | None = None  # 0-100, from the last heartbeat
    heartbeat_at: float | None = None

    @property
    def remaining_micros(self) -> int | None:
        if self.cap_micros is None:
            return None
        return max(0, self.cap_micros - self.spent_micros - self.reserved_micros)


@dataclass(frozen=True, slots=True)
class Reserved:
    reservation: Reservation
    workflow: WorkflowState | None


@dataclass(frozen=True, slots=True)
class Settled:
    workflow: WorkflowState | None
    # True when no hold (and no record of an earlier settle) was found: the store lost
    # it; the charge was still applied to the workflow and key window (re-created
    # when missing, with the reservation's caps).
    orphan: bool = False


@dataclass(frozen=True, slots=True)
class KeySpend:
    key: str
    period_start: int
    spent_micros: int
    reserved_micros: int


ClaimOutcome = Literal["claimed", "replay", "conflict", "in_flight"]


@dataclass(frozen=True, slots=True)
class IdemClaim:
    outcome: ClaimOutcome
    token: str | None = None  # claimed: the lease owner's token
    record: bytes | None = None  # replay: the stored answer
    lease_until: float | None = None  # in_flight: when the holder's lease runs out


class Store(Protocol):
    """Budgets, workflow status and idempotency records; see the module docstring."""

    async def open(self) -> None:
        """Connect and establish the store's epoch (Redis): a store that lost its data
        since this process (or any replica) last saw it is detected, see ``check``."""
        ...

    async def close(self) -> None: ...
    async def ping(self) -> None:
        """Exercise the write path (a small write and read back); raise
        StoreUnavailable when the store cannot be used (unreachable, full, wedged,
        or reset: StoreReset)."""
        ...

    async def check(self, now: float) -> None:
        """Periodic self-check: detect a store that lost its data (its epoch vanished
        or changed) and, in the reset state, leave it once an operator accepted the
        reset (or the data came back). Raises nothing for a healthy store, nor for a
        reset it detects (``reset_info`` reports that); raises StoreUnavailable when
        unreachable."""
        ...

    def limiter(self) -> Limiter:
        """Per-key rate limits kept in this store (``accounting.limits``)."""
        ...

    def reset_info(self) -> dict[str, object] | None:
        """While the store is in the reset state (every budget/idempotency operation
        raises StoreReset): what was detected, when. None otherwise."""
        ...

    async def accept_reset(self, now: float) -> None:
        """Admin: the operator confirms the data loss; a new epoch is written and every
        replica leaves the reset state at its next ``check``."""
        ...

    # -- budgets --------------------------------------------------------------
    async def reserve(self, req: ReserveRequest) -> Reserved:
        """Create/update the workflow and hold the worst case, atomically, or raise
        BudgetExceeded (nothing held). Expired holds of that workflow/key are swept
        first (counted as spent). Without a workflow id and key budget it still
        returns a Reservation (nothing to check).

        The first request creates the workflow (its caps, ``started_at``); a later one
        can only set or lower a cap (``None`` is no cap), never raise it. The creation,
        cap lowering, ``step``, ``last_seen_at`` and the sweep persist even when the
        request is refused, so the first request always sets the cap. Checks, in order:
        workflow usd cap, workflow token cap, key budget window. A completed workflow
        still accepts reservations; its status stays ``completed``. Key spend is only
        tracked for requests carrying a ``key_budget``.

        Guardrails, in the same atomic step and before the budgets (a refusal raises
        GuardrailRefused, holds nothing and counts nothing; the creation, limits,
        ``name``, step and ``last_seen_at`` persist as with the budgets): a workflow
        with a ``stop_reason`` (cancelled, cost_anomaly) refuses everything
        (``cancelled``, ``detail`` = the reason); at or past ``deadline_at``
        (``started_at + timeout_s``, set by the first request, lowered by a later one,
        never raised) -> ``expired`` (``limit`` = the timeout, ``value`` = seconds since
        ``started_at``); with ``new_call``, when
        ``requests`` already reached ``max_calls`` (same set/lower rule) ->
        ``call_limit`` (``limit`` = max_calls, ``value`` = requests); with ``new_call``
        and a ``fingerprint`` and ``max_identical`` > 0, when that fingerprint was
        already counted ``max_identical`` times in this workflow -> ``loop`` (``limit``
        = max_identical, ``value`` = the count). When the reservation is held and
        ``new_call`` is set, ``requests`` grows by one and the fingerprint's count too
        (the store keeps the counts of at most the 256 most recently counted
        fingerprints of a workflow; a forgotten one counts from zero again). ``name``
        is set by the first request that names it and never changed. ValueError
        (nothing written) for a timeout not in (0, ten years], a ``max_calls`` not in
        ``[1, 2**53 - 1]``, a negative ``max_identical``, a name of more than 64
        characters (or none), a fingerprint of more than 256.
        """
        ...

    async def settle(self, res: Reservation, charge: Charge, now: float) -> Settled:
        """Replace the hold by the actual charge and update counters. Idempotent per
        reservation id (a second settle changes nothing). Returns the workflow after.

        ``tokens_spent`` grows by input + output + partial_output (cached_input is part
        of input and only shows in ``tokens_by_kind``). Settling a hold that was swept
        as expired replaces its estimate: spent moves by actual - held, and
        ``expired_micros`` drops by the held amount (``expired_holds`` keeps counting
        the expiry). A hold the store does not know and never settled is an orphan:
        the charge is still applied (see ``Settled.orphan``)."""
        ...

    async def get_workflow(self, key: str, workflow_id: str, now: float) -> WorkflowState | None:
        """The workflow after sweeping its expired holds (counted as spent)."""
        ...

    async def complete_workflow(
        self,
        key: str,
        workflow_id: str,
        now: float,
        outcome: Outcome = "succeeded",
        error: str | None = None,
    ) -> WorkflowState | None:
        """Sweep its expired holds, then mark completed (``completed_at`` = the first
        completion, with its ``outcome`` and ``error``, cut to 2,000 characters);
        idempotent (a second call changes nothing). It leaves the stalled listing. None
        when there is no such workflow. A cancelled workflow stays ``cancelled`` and
        records the outcome, error and ``completed_at`` if it has no outcome yet."""
        ...

    async def cancel_workflow(
        self, key: str, workflow_id: str, now: float, reason: str = "cancelled"
    ) -> WorkflowState | None:
        """Stop the workflow (after sweeping its expired holds): ``stop_reason`` =
        ``reason`` (1-64 characters), ``cancelled_at`` = now (the first time), status
        ``cancelled`` (unless completed); every later reservation is refused, settles
        still apply, it leaves the stalled listing, ``last_seen_at`` is not touched.
        Idempotent: a later call (whatever its reason) changes nothing. None when there
        is no such workflow."""
        ...

    async def heartbeat(
        self, key: str, workflow_id: str, now: float, step: str | None, progress: float | None
    ) -> WorkflowState | None:
        """The workflow is alive between model calls: after sweeping its expired holds,
        ``last_seen_at`` and ``heartbeat_at`` = now, and ``step`` (at most 256
        characters) / ``progress`` (finite, 0-100) when given; its status does not
        change. None when there is no such workflow (a heartbeat creates none)."""
        ...

    async def list_workflows(
        self, key: str, status: str, idle_before: float, after: str | None, limit: int
    ) -> tuple[list[WorkflowState], str | None]:
        """One page of the key's workflows with ``status`` (running, stalled — running
        with ``last_seen_at`` < ``idle_before`` —, completed, cancelled; ``running``
        includes stalled ones), ordered by workflow id (bytewise), those after the
        cursor ``after`` (exclusive); returns at most ``limit`` (>= 1) and the next
        cursor (the page's last id; None when nothing follows). Each is swept first, of
        the holds that ran out by ``idle_before`` (the listing has no ``now``, like
        ``list_stalled``)."""
        ...

    async def cancelled_among(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (key, workflow id) pairs have a ``stop_reason`` (one round
        trip, or one query, for all: the gateway polls it for its requests in flight)."""
        ...

    async def note_completed_cost(self, name: str, cost_micros: int, now: float) -> None:
        """Remember a completed workflow's cost under its kind (the last 101 of each
        kind; a kind is forgotten a workflow TTL after its last cost). ``name``: 1-64
        characters."""
        ...

    async def kind_medians(self) -> dict[str, int]:
        """The median cost of each kind's remembered completed workflows (of an even
        count, the lower of the two middle ones: integer micro-USD)."""
        ...

    async def set_workflow_cap(
        self, key: str, workflow_id: str, cap_micros: int | None, cap_tokens: int | None, now: float
    ) -> WorkflowState | None:
        """Admin: set (raise or lower) the caps of an existing workflow. Both caps are
        replaced: ``None`` removes that cap. ``last_seen_at`` is not touched."""
        ...

    async def list_stalled(self, idle_before: float, limit: int = 100) -> list[WorkflowState]:
        """Running workflows whose last_seen_at < idle_before, oldest first, each after
        sweeping its holds whose lease ran out by ``idle_before`` (the listing has no
        ``now``; ``idle_before`` is earlier, so nothing live is expired)."""
        ...

    async def count_stalled(self, idle_before: float) -> int: ...
    async def key_spend(self, key: str, period_s: int, now: float) -> KeySpend: ...

    # -- idempotency ----------------------------------------------------------
    async def idem_claim(
        self,
        key: str,
        scope: str,
        fingerprint: str,
        lease_s: float,
        now: float,
    ) -> IdemClaim:
        """Atomically: absent or pending-with-expired-lease -> claimed (new token);
        completed with the same fingerprint -> replay; different fingerprint (pending
        or completed) -> conflict; pending with a live lease -> in_flight. ``key`` is
        the gateway key the scope belongs to (its tenant).

        A completed record past its TTL and a pending claim past its lease count as
        absent (whatever their fingerprint)."""
        ...

    async def idem_complete(
        self, key: str, scope: str, token: str, record: bytes, ttl_s: float, now: float
    ) -> bool:
        """Store the answer if ``token`` still holds the claim; False otherwise. The
        record then expires at ``now + ttl_s``."""
        ...

    async def idem_release(self, key: str, scope: str, token: str) -> None:
        """Drop a pending claim held by ``token`` (nothing worth storing happened)."""
        ...

    async def sweep(self, now: float) -> int:
        """Count every hold whose lease ran out as spent (whatever its workflow or key),
        delete expired idempotency records and state idle for longer than the store's
        workflow TTL; returns how many holds were expired plus rows (entries) removed."""
        ...
