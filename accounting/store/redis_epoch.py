"""How ``RedisStore`` notices that Redis forgot everything, and fails closed until an
operator accepts it.

A Redis without persistence comes back empty after a restart, and a failover can
promote an empty replica. Budgets would then silently start from zero: spend, holds
and caps gone, idempotency records gone. So the store has an *epoch*:

* ``<prefix>{%store}:epoch`` holds the store's epoch E. The first store to open an
  empty Redis writes ``boot:<random>`` (or, on a single Redis that an older version
  used, adopts that version's ``<prefix>epoch``, so tenant data written under it stays
  valid); an operator accepting a reset writes ``accepted:<random>``. The store-wide
  keys (``epoch``, ``reset_detected``, ``ready``) share the ``{%store}`` hash tag, so
  the scripts below touch one cluster slot.
* ``B:epoch`` (``B`` = a tenant's hash-tagged base) holds E too, in the tenant's own
  slot, and every tenant script checks it first (``guard()`` in ``redis_scripts``):
  equal -> go on; missing for a tenant this process never saw -> write E and go on;
  missing for a tenant it saw, or different -> ``lost``, nothing done.
* Each process remembers the tenants whose marker it has seen (bounded by the number
  of gateway keys).

On ``lost`` the store asks the store-wide keys (``CHECK``) before it concludes, so
that an accepted reset does not raise a false alarm: a store-wide epoch that is
``accepted:`` and not its own means another replica accepted a reset while this one
was not looking (adopt it, retry once); its own epoch store-wide, for a tenant this
process never saw, means the marker is a leftover written before an acceptance
(rewrite it, retry once). Anything else is a loss: ``<prefix>{%store}:reset_detected`` is
written (a small JSON: detected_at, reason, the lost epoch) and StoreReset raised.
The periodic ``check`` reads the same keys: the epoch gone or changed (to anything
but an ``accepted:`` one, which is adopted), or ``reset_detected`` present, puts the
process in the reset state too, and a store opened on a Redis with
``reset_detected`` starts in it. So a tenant this process never saw is vouched for by
``check`` alone, within one check interval.

In the reset state every budget and idempotency operation, and ``ping``, raises
StoreReset without touching Redis. ``check`` leaves it when ``reset_detected`` is gone
and the epoch is the one that was lost (the data came back: a failback to the old
primary) or an ``accepted:`` one (an operator accepted, ``accept_reset``). Leaving
forgets the tenants seen, since their data is not what it was. ``detected_at`` is the
wall clock: an operator-facing time, never compared with leases.

On Redis Cluster the store-wide keys live on the shard of ``{%store}`` and each
tenant's marker on its tenant's shard, so a shard that comes back empty is found
tenant by tenant, by a process that has seen the tenant (its flag ``1``), and then
recorded store-wide like any loss.

What an accepted reset means for money: spend and holds recorded before the loss are
gone; each workflow starts again from zero spend, its cap re-created from the next
request's headers or the key's ceiling; key windows start from zero; settles of holds
made before the loss are applied as orphans (``Settled.orphan``); idempotency records
are gone, so a repeated request runs again.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from accounting.errors import StoreReset
from accounting.store.redis_codec import f, store_key

Run = Callable[[str, Sequence[str], Sequence[str]], Awaitable[Any]]

READY_TTL_MS = 10_000


class Epoch:
    """This process's view of the store's epoch, and the scripts that move it."""

    def __init__(self, prefix: str) -> None:
        self._keys = [store_key(prefix, "epoch"), store_key(prefix, "reset_detected")]
        self._ready = store_key(prefix, "ready")
        self.legacy = ""  # an older layout's epoch, adopted if the store has none
        self.value: str | None = None  # E; in the reset state, the epoch that was lost
        self.reset: dict[str, object] | None = None
        self._established = False
        self._known: set[str] = set()

    # -- what tenant scripts need --------------------------------------------------
    def guard(self) -> None:
        if self.reset is not None:
            raise StoreReset(self.message())

    async def current(self, run: Run) -> str:
        """The epoch a tenant script runs under; StoreReset in the reset state."""
        if not self._established and self.reset is None:
            await self.establish(run)
        self.guard()
        if self.value is None:
            raise RuntimeError("an established epoch has a value")
        return self.value

    def flag(self, tenant: str) -> str:
        return "1" if tenant in self._known else "0"

    def saw(self, tenant: str, used: str) -> None:
        """A tenant script succeeded under ``used``: the tenant's marker holds it."""
        if used == self.value and self.reset is None:
            self._known.add(tenant)

    async def on_lost(self, run: Run, tenant: str, used: str, flag: str) -> str:
        """A tenant script answered ``lost``: decide, and give the flag to retry with
        (or raise StoreReset)."""
        self.guard()
        if used != self.value:  # adopted a newer epoch meanwhile: just run again
            return self.flag(tenant)
        args = ["lost", used, f(time.time()), tenant, "", "1" if flag == "1" else "0"]
        reply = await run("check", [*self._keys, self._ready], args)
        outcome = reply[0]
        if outcome == b"adopt":
            self._adopt(reply[1].decode())
            return "0"
        if outcome == b"force":
            return "force"
        self._enter_reset(reply[1])
        raise StoreReset(self.message())

    # -- open, check, accept -------------------------------------------------------
    async def establish(self, run: Run) -> None:
        reply = await run("open", self._keys, [f"boot:{secrets.token_hex(8)}", self.legacy])
        if reply[0] == b"reset":
            self._enter_reset(reply[1])
        else:
            self._adopt(reply[1].decode())

    async def check(self, run: Run, *, ready: bool = False) -> None:
        if not self._established and self.reset is None:
            await self.establish(run)
        args = ["check", self.value or "", f(time.time()), "", str(READY_TTL_MS) if ready else ""]
        reply = await run("check", [*self._keys, self._ready], [*args, "1"])
        if reply[0] == b"reset":
            self._enter_reset(reply[1])
        elif self.reset is not None or reply[1].decode() != self.value:
            self._adopt(reply[1].decode())

    async def accept(self, run: Run) -> None:
        value = f"accepted:{secrets.token_hex(8)}"
        await run("accept", self._keys, [value])
        self._adopt(value)

    def message(self) -> str:
        reason = (self.reset or {}).get("reason", "")
        return (
            "the store lost its data (a Redis restart without persistence or a failover to "
            f"an empty replica; {reason}): budgets fail closed until an operator accepts "
            "the reset via POST /admin/store/accept-reset"
        )

    def _adopt(self, value: str) -> None:
        self.value, self.reset, self._established = value, None, True
        self._known.clear()

    def _enter_reset(self, raw: bytes) -> None:
        try:
            info = json.loads(raw)
        except ValueError:  # written by someone else: keep it readable anyway
            info = {"reason": raw.decode(errors="replace")}
        if not isinstance(info, dict):
            info = {"reason": str(info)}
        self.reset = info
        if self.value is None and isinstance(info.get("epoch"), str) and info["epoch"]:
            self.value = info["epoch"]
        self._established = True
        self._known.clear()
