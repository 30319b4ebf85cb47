"""The Redis store's per-key rate limits (``accounting.limits`` has the rules; the
script below mirrors its arithmetic).

Two keys per gateway key, under its hash tag (so one script touches one slot):
``<prefix>{<key>}:rl``, a hash of each bucket's level and time (``rpm_l``, ``rpm_t``,
``tpm_l``, ``tpm_t``), expiring three minutes after its last change (by then full
again, the same as absent); and ``<prefix>{<key>}:rl:leases``, a sorted set of the
requests in flight scored by their expiry, trimmed on every admit. Both are
shared by every replica; ``admit`` and ``release`` are one script each, atomic.

Limits are not money: a Redis that restarts empty starts every bucket full and
forgets the leases, which the epoch guard of the budget scripts does not need to
protect.
"""

from __future__ import annotations

import hashlib
from typing import Any

from accounting.limits import ADMITTED, Admission, KeyLimits, LimitName
from accounting.store.redis_client import ScriptClient
from accounting.store.redis_codec import tenant_tag

SCRIPT = """
local now = tonumber(ARGV[2])
local function limit(i) if ARGV[i] == '' then return nil end return tonumber(ARGV[i]) end
local rpm, tpm, inflight = limit(3), limit(4), limit(5)
local function level(name, capacity)
  local l = tonumber(redis.call('HGET', KEYS[1], name .. '_l'))
  local t = tonumber(redis.call('HGET', KEYS[1], name .. '_t'))
  if not l or not t then return capacity end
  local elapsed = now - t
  if elapsed < 0 then elapsed = 0 end
  return math.min(capacity, l + elapsed * capacity / 60)
end
local function save(name, l)
  redis.call('HSET', KEYS[1], name .. '_l', tostring(l), name .. '_t', tostring(now))
  redis.call('EXPIRE', KEYS[1], 180)
end
if ARGV[1] == 'release' then
  redis.call('ZREM', KEYS[2], ARGV[7])
  local unused = tonumber(ARGV[9])
  if tpm and unused ~= 0 then
    local l = math.max(-tpm, math.min(tpm, level('tpm', tpm) + unused))
    save('tpm', l)
  end
  return {'ok'}
end
if inflight then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= inflight then return {'inflight', '1'} end
end
local wait, name = 0, 'rpm'
local rl, tl
local cost = 0
if rpm then
  rl = level('rpm', rpm)
  local w = (1 - rl) * 60 / rpm
  if w > wait then wait, name = w, 'rpm' end
end
if tpm then
  cost = math.min(tonumber(ARGV[6]), tpm)
  tl = level('tpm', tpm)
  local w = (cost - tl) * 60 / tpm
  if w > wait then wait, name = w, 'tpm' end
end
if wait > 0 then return {name, tostring(wait)} end
if rpm then save('rpm', rl - 1) end
if tpm then save('tpm', tl - cost) end
if inflight then
  redis.call('ZADD', KEYS[2], ARGV[8], ARGV[7])
  local keep = math.ceil(tonumber(ARGV[8]) - now) + 60
  if redis.call('TTL', KEYS[2]) < keep then redis.call('EXPIRE', KEYS[2], keep) end
end
return {'ok'}
"""


def _opt(value: int | None) -> str:
    return "" if value is None else str(value)


class RedisLimiter:
    """``accounting.limits.Limiter`` shared through a ``RedisStore``'s Redis."""

    SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()

    def __init__(self, client: ScriptClient) -> None:
        self._c = client

    async def _run(self, key: str, args: list[str]) -> list[Any]:
        base = tenant_tag(self._c.prefix, key)
        keys = [f"{base}:rl", f"{base}:rl:leases"]
        reply: list[Any] = await self._c.do(self._c.evalsha_or_eval(SCRIPT, keys, args, self.SHA))
        return reply

    async def admit(
        self, key: str, limits: KeyLimits, tokens: int, lease: str, lease_until: float, now: float
    ) -> Admission:
        args = ["admit", repr(now), *_limits(limits), str(tokens), lease, repr(lease_until), "0"]
        reply = await self._run(key, args)
        if reply[0] == b"ok":
            return ADMITTED
        name: LimitName = reply[0].decode()
        return Admission(name, float(reply[1]))

    async def release(
        self, key: str, limits: KeyLimits, lease: str, unused_tokens: int, now: float
    ) -> None:
        args = ["release", repr(now), *_limits(limits), "0", lease, "0", str(unused_tokens)]
        await self._run(key, args)


def _limits(limits: KeyLimits) -> list[str]:
    return [_opt(limits.rpm), _opt(limits.tpm), _opt(limits.max_inflight)]
