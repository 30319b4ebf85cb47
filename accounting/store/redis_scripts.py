"""Lua scripts of ``RedisStore``: each read-modify-write is one script, so it is atomic.
This file has the request path (reserve, settle); ``redis_lua`` the shared prelude,
``redis_scripts_workflows`` a workflow's life (status, completion, cancellation,
heartbeat, listing), ``redis_scripts_admin`` the rest.

Key layout (``B`` = ``<prefix>{<tenant>}``, ``redis_codec.tenant_tag``, the tenant
being the escaped gateway key; ``S`` = ``<prefix>{%store}``). Everything one script
changes shares one hash tag, so every script touches one cluster slot, and the same
layout serves a single Redis and Redis Cluster:

* ``B:epoch``          string the store's epoch as this tenant's data last saw it
* ``B:wf:<workflow>``  hash   the workflow (fields named like ``WorkflowState``,
  ``tk:<kind>`` for tokens by kind; a field that is None is absent)
* ``B:fp:<workflow>``  hash   the loop guard's counts: fingerprint -> count
* ``B:fpo:<workflow>`` zset   the same fingerprints scored by the workflow's
  ``requests`` when last counted (the least recent go past ``FINGERPRINTS_KEPT``)
* ``B:wfs``            zset   the tenant's workflow ids, all scored 0 (paged by id with
  ZRANGEBYLEX; an id whose workflow expired is dropped when a listing meets it)
* ``B:wh:<workflow>``  zset   the workflow's live holds, scored by expires_at
* ``B:h:<id>``         hash   one hold: amount, tokens, wid, period, expires_at, state
  (``held``, ``expired``; ``settled`` is a tombstone of the state field alone)
* ``B:kp:<start>``     hash   the key's budget window: spent_micros, reserved_micros
* ``B:kh:<start>``     zset   the window's live holds, scored by expires_at
* ``B:leases``         zset   every live hold of the tenant, scored by expires_at
* ``B:running``        zset   the tenant's running workflows (ids) by last_seen_at
* ``B:ledger``         stream one entry per settle of the tenant, capped (``MAXLEN ~``)
* ``B:idem:<scope>``   hash   an idempotency record
* ``S:tenants``        set    every tenant that has had state (``ScriptClient.register``,
  before its first script in a process): what the sweep and the stalled listing go
  through, tenant by tenant, with no KEYS or SCAN
* ``S:kind:<name>``    list   the last ``KIND_COSTS_KEPT`` costs of completed workflows
  of that kind, newest first; ``S:kinds`` set the kinds (plain commands outside the
  tenant scripts, one MULTI in one slot, expiring a workflow TTL after the last)
* ``S:epoch``, ``S:reset_detected``, ``S:ready``: see ``redis_epoch``

An older layout kept ``<prefix>running``, ``<prefix>lease_tenants``,
``<prefix>ledger``, ``<prefix>epoch``, ``<prefix>kinds`` and ``<prefix>kind:<name>``
outside any tag; they are no longer written. ``RedisStore.open`` adopts the old epoch
and registers the tenants of the old indexes (a single Redis only: Redis Cluster was
never supported by that layout); the rest is not read (see the README's upgrade note).

Every tenant script begins with ``guard()``: KEYS[1] is ``B:epoch``, ARGV[1] the
store's epoch, ARGV[2] whether this process has seen the tenant's marker (``1``,
``0``, or ``force``: rewrite it), ARGV[3] a fence (unix seconds, ``''`` for none). A
fence that passed by the server's clock means the store already gave up on the call:
the script returns ``stale`` and changes nothing. A marker that is missing for a
tenant this process has seen, or differs, returns ``lost`` and changes nothing.

Amounts travel as decimal strings and are only changed with HINCRBY, so counters are
exact 64-bit integers; Lua numbers (doubles) are used for comparisons only, exact
because every amount is at most ``MAX_STORE_INT`` (2**53 - 1). The one time a script
computes (``deadline_at`` = started_at + timeout) is written as a Lua number, which
Redis turns into text exactly (17 significant digits; ``tostring`` would round it).

A script that fails half-way keeps the writes it made before the error, so every
script checks its numeric arguments (``bad_args``) before it writes anything and
answers ``invalid`` with the argument's index (the client raises ValueError). And no
value already stored can make a script fail: ``incr`` never fails on a field that
holds no integer or would pass 64 bits, ``num`` reads anything as a number, ``neg``
takes what a hold holds; otherwise one bad field would fail every read of its
workflow for as long as it lives.
"""

from __future__ import annotations

from accounting.store.redis_lua import PRELUDE

# KEYS: 1 epoch marker, 2 workflow, 3 workflow holds, 4 window, 5 window holds,
#       6 new hold, 7 the tenant's running index, 8 tenant leases, 9 fingerprint
#       counts, 10 fingerprint recency, 11 the tenant's workflow index
# ARGV: 1-3 guard, 4 base, 5 workflow id (running index member), 6 reservation id,
#       7 amount, 8 tokens,
#       9 now, 10 expires_at, 11 workflow id ('' = none), 12 cap_micros ('' = none),
#       13 cap_tokens ('' = none), 14 step given ('1'/'0'), 15 step,
#       16 key limit ('' = no key budget), 17 window start, 18 window ttl s,
#       19 workflow ttl s, 20 hold ttl s, 21 tenant (unused), 22 timeout s ('' = none),
#       23 max calls ('' = none), 24 name ('' = none), 25 new call ('1'/'0'),
#       26 fingerprint ('' = not counted), 27 max identical, 28 fingerprints kept
# Reply: ok | workflow | tokens | key (budgets) | cancelled | expired | call_limit |
#        loop (guardrails), then the workflow's fields (and the count: key, loop)
RESERVE = (
    PRELUDE
    + """
local bad = bad_args('m3 i7 i8 n9 n10 o12 o13 o16 o17 i18 i19 i20 m22 o23 i27 i28')
if bad then return bad end
local g = guard()
if g then return g end
local wf, base, now, amount, tokens = KEYS[2], ARGV[4], ARGV[9], ARGV[7], ARGV[8]
local has_wf, has_kb = ARGV[11] ~= '', ARGV[16] ~= ''
local new_call, fp = ARGV[25] == '1', ARGV[26]
if has_wf then sweep(base, KEYS[3], now, ARGV[19]) end
if has_kb then sweep(base, KEYS[5], now, ARGV[19]) end

local function lower(field, cap)
  if cap == '' then return end
  local cur = redis.call('HGET', wf, field)
  if not cur or tonumber(cap) < num(cur) then redis.call('HSET', wf, field, cap) end
end

-- the deadline is set or lowered (started_at + timeout), never raised
local function lower_deadline(timeout)
  if timeout == '' then return end
  local deadline = num(redis.call('HGET', wf, 'started_at')) + tonumber(timeout)
  local cur = redis.call('HGET', wf, 'deadline_at')
  if not cur or deadline < num(cur) then redis.call('HSET', wf, 'deadline_at', deadline) end
end

-- the first guardrail that refuses (see accounting.store.guardrails), or nil;
-- w: stop_reason, deadline_at, max_calls, requests
local function guardrails(w)
  if w[1] then return {'cancelled', hgetall(wf)} end
  if w[2] and tonumber(now) >= num(w[2]) then return {'expired', hgetall(wf)} end
  if new_call and w[3] and num(w[4]) >= num(w[3]) then return {'call_limit', hgetall(wf)} end
  if fp ~= '' then
    local seen = redis.call('HGET', KEYS[9], fp)
    if seen and num(seen) >= tonumber(ARGV[27]) then return {'loop', hgetall(wf), seen} end
  end
  return nil
end

-- one more request, and one more of its fingerprint (the least recently counted of
-- more than ARGV[28] fingerprints are forgotten)
local function count_call()
  incr(wf, 'requests', 1)
  if fp == '' then return end
  local seq = num(redis.call('HGET', wf, 'requests'))
  if redis.call('ZADD', KEYS[10], seq, fp) == 1 then
    local over = redis.call('ZCARD', KEYS[10]) - tonumber(ARGV[28])
    if over > 0 then
      local old = redis.call('ZPOPMIN', KEYS[10], over)
      for i = 1, #old, 2 do redis.call('HDEL', KEYS[9], old[i]) end
    end
  end
  incr(KEYS[9], fp, 1)
  keep_alive(ARGV[19], KEYS[9], KEYS[10])
end

if has_wf then
  if redis.call('EXISTS', wf) == 0 then
    redis.call('HSET', wf, 'started_at', now, 'status', 'running')
  end
  lower('cap_micros', ARGV[12])
  lower('cap_tokens', ARGV[13])
  lower_deadline(ARGV[22])
  lower('max_calls', ARGV[23])
  if ARGV[24] ~= '' then redis.call('HSETNX', wf, 'name', ARGV[24]) end
  if ARGV[14] == '1' then redis.call('HSET', wf, 'step', ARGV[15]) end
  redis.call('HSET', wf, 'last_seen_at', now)
  if redis.call('HGET', wf, 'status') == 'running' then
    redis.call('ZADD', KEYS[7], now, ARGV[5])
  end
  redis.call('ZADD', KEYS[11], 0, ARGV[11])
  keep_alive(ARGV[19], wf, KEYS[9], KEYS[10], KEYS[11], KEYS[7])
  local w = redis.call('HMGET', wf, 'stop_reason', 'deadline_at', 'max_calls', 'requests',
    'cap_micros', 'cap_tokens', 'spent_micros', 'reserved_micros', 'tokens_spent',
    'tokens_reserved')
  local refused = guardrails(w)
  if refused then return refused end
  if w[5] and num(w[7]) + num(w[8]) + tonumber(amount) > num(w[5]) then
    return {'workflow', hgetall(wf)}
  end
  if w[6] and num(w[9]) + num(w[10]) + tonumber(tokens) > num(w[6]) then
    return {'tokens', hgetall(wf)}
  end
end

if has_kb then
  local p = redis.call('HMGET', KEYS[4], 'spent_micros', 'reserved_micros')
  if num(p[1]) + num(p[2]) + tonumber(amount) > tonumber(ARGV[16]) then
    local state = {}
    if has_wf then state = hgetall(wf) end
    return {'key', state, p[1] or '0', p[2] or '0'}
  end
end

redis.call('HSET', KEYS[6], 'amount', amount, 'tokens', tokens, 'expires_at', ARGV[10],
  'state', 'held')
redis.call('EXPIRE', KEYS[6], ARGV[20])
local state = {}
if has_wf then
  redis.call('HSET', KEYS[6], 'wid', ARGV[11])
  incr(wf, 'reserved_micros', amount)
  incr(wf, 'tokens_reserved', tokens)
  redis.call('ZADD', KEYS[3], ARGV[10], ARGV[6])
  redis.call('EXPIRE', KEYS[3], ARGV[20])
  if new_call then count_call() end
  state = hgetall(wf)
end
if has_kb then
  redis.call('HSET', KEYS[6], 'period', ARGV[17])
  incr(KEYS[4], 'reserved_micros', amount)
  redis.call('ZADD', KEYS[5], ARGV[10], ARGV[6])
  redis.call('EXPIRE', KEYS[4], ARGV[18])
  redis.call('EXPIRE', KEYS[5], ARGV[18])
end
if has_wf or has_kb then
  -- no TTL: settles and sweeps empty it, and Redis drops an empty zset
  redis.call('ZADD', KEYS[8], ARGV[10], ARGV[6])
end
return {'ok', state}
"""
)

# KEYS: 1 epoch marker, 2 hold, 3 workflow, 4 workflow holds, 5 window, 6 window holds,
#       7 the tenant's running index, 8 the tenant's ledger, 9 tenant leases, 10 the
#       tenant's workflow index, 11 fingerprint counts, 12 fingerprint recency
# ARGV: 1-3 guard, 4 reservation id, 5 cost, 6 counted tokens, 7 now, 8 sent,
#       9 retry, 10 fallback, 11 partial, 12 has workflow, 13 has window,
#       14 workflow id (running index member), 15 workflow ttl s, 16 ledger max length
#       (per tenant), 17 tombstone ttl s,
#       18 cap_micros ('' = none), 19 cap_tokens ('' = none), 20 re-created window
#       ttl s, 21 workflow id, 22 ledger entry count n, then n field/value pairs, then
#       kind/count pairs
SETTLE = (
    PRELUDE
    + """
local bad = bad_args('m3 i5 i6 n7 i8 i9 i10 i11 i15 i16 i17 o18 o19 i20 i22')
if bad then return bad end
local kinds = 23 + 2 * tonumber(ARGV[22])
if kinds > #ARGV + 1 or (#ARGV - kinds) % 2 == 0 then return {'invalid', 22} end
for i = kinds + 1, #ARGV, 2 do
  if not valid('i', ARGV[i]) then return {'invalid', i} end
end
local g = guard()
if g then return g end
local hold, wf, rid, now, cost = KEYS[2], KEYS[3], ARGV[4], ARGV[7], ARGV[5]
local has_wf, has_kb = ARGV[12] == '1', ARGV[13] == '1'
local function state()
  if has_wf then return hgetall(wf) end
  return {}
end
local h = redis.call('HMGET', hold, 'amount', 'tokens', 'state')
if h[3] == 'settled' then return {'none', state()} end
local outcome, a, t, held = 'ok', h[1] or '0', h[2] or '0', h[3] == 'held'

if not h[3] then
  -- an orphan: the store lost the hold; charge anyway, re-create what is gone
  outcome = 'orphan'
  if has_wf and redis.call('EXISTS', wf) == 0 then
    redis.call('HSET', wf, 'started_at', now, 'status', 'running')
    if ARGV[18] ~= '' then redis.call('HSET', wf, 'cap_micros', ARGV[18]) end
    if ARGV[19] ~= '' then redis.call('HSET', wf, 'cap_tokens', ARGV[19]) end
    redis.call('ZADD', KEYS[10], 0, ARGV[21])
  end
  if has_kb and redis.call('EXISTS', KEYS[5]) == 0 then
    redis.call('HSET', KEYS[5], 'spent_micros', 0, 'reserved_micros', 0)
    redis.call('EXPIRE', KEYS[5], ARGV[20])
  end
elseif has_wf and redis.call('EXISTS', wf) == 1 then
  if held then
    incr(wf, 'reserved_micros', neg(a))
    incr(wf, 'tokens_reserved', neg(t))
  else
    incr(wf, 'spent_micros', neg(a))
    incr(wf, 'tokens_spent', neg(t))
    incr(wf, 'expired_micros', neg(a))
  end
end
if outcome == 'ok' and has_kb and redis.call('EXISTS', KEYS[5]) == 1 then
  if held then
    incr(KEYS[5], 'reserved_micros', neg(a))
  else
    incr(KEYS[5], 'spent_micros', neg(a))
  end
end

if has_wf and redis.call('EXISTS', wf) == 1 then
  incr(wf, 'spent_micros', cost)
  incr(wf, 'tokens_spent', ARGV[6])
  incr(wf, 'calls', ARGV[8])
  incr(wf, 'retries', ARGV[9])
  incr(wf, 'fallbacks', ARGV[10])
  incr(wf, 'partial_streams', ARGV[11])
  for i = kinds, #ARGV, 2 do
    incr(wf, 'tk:' .. ARGV[i], ARGV[i + 1])
  end
  redis.call('HSET', wf, 'last_seen_at', now)
  if redis.call('HGET', wf, 'status') == 'running' then
    redis.call('ZADD', KEYS[7], now, ARGV[14])
  end
  keep_alive(ARGV[15], wf, KEYS[10], KEYS[11], KEYS[12], KEYS[7])
end
if has_kb and redis.call('EXISTS', KEYS[5]) == 1 then
  incr(KEYS[5], 'spent_micros', cost)
end
if has_wf then redis.call('ZREM', KEYS[4], rid) end
if has_kb then redis.call('ZREM', KEYS[6], rid) end
redis.call('ZREM', KEYS[9], rid)

redis.call('DEL', hold)
redis.call('HSET', hold, 'state', 'settled')
redis.call('EXPIRE', hold, ARGV[17])
local entry = {}
for i = 23, 22 + 2 * tonumber(ARGV[22]) do entry[#entry + 1] = ARGV[i] end
redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[16], '*', unpack(entry))
redis.call('EXPIRE', KEYS[8], ARGV[15])
return {outcome, state()}
"""
)
