"""Lua scripts of ``RedisStore``: each read-modify-write is one script, so it is atomic.
This file has the shared prelude and the request path (reserve, settle);
``redis_scripts_admin`` the rest.

Key layout (``B`` = ``<prefix>{<tenant>}``, the tenant being the escaped gateway key;
everything of one tenant shares its hash tag, so one tenant is one cluster slot):

* ``B:epoch``          string the store's epoch as this tenant's data last saw it
* ``B:wf:<workflow>``  hash   the workflow (fields named like ``WorkflowState``,
  ``tk:<kind>`` for tokens by kind)
* ``B:wh:<workflow>``  zset   the workflow's live holds, scored by expires_at
* ``B:h:<id>``         hash   one hold: amount, tokens, wid, period, expires_at, state
  (``held``, ``expired``; ``settled`` is a tombstone of the state field alone)
* ``B:kp:<start>``     hash   the key's budget window: spent_micros, reserved_micros
* ``B:kh:<start>``     zset   the window's live holds, scored by expires_at
* ``B:leases``         zset   every live hold of the tenant, scored by expires_at
* ``B:idem:<scope>``   hash   an idempotency record
* ``<prefix>running``  zset   running workflows (``<tenant>:<workflow>``) by last_seen_at
* ``<prefix>lease_tenants`` zset tenants with live holds, scored at or below their
  earliest lease (the periodic sweep's index: no KEYS or SCAN)
* ``<prefix>ledger``   stream one entry per settle, capped (``MAXLEN ~``)
* ``<prefix>epoch``, ``<prefix>reset_detected``, ``<prefix>ready``: see ``redis_epoch``

Every tenant script begins with ``guard()``: KEYS[1] is ``B:epoch``, ARGV[1] the
store's epoch, ARGV[2] whether this process has seen the tenant's marker (``1``,
``0``, or ``force``: rewrite it), ARGV[3] a fence (unix seconds, ``''`` for none). A
fence that passed by the server's clock means the store already gave up on the call:
the script returns ``stale`` and changes nothing. A marker that is missing for a
tenant this process has seen, or differs, returns ``lost`` and changes nothing.

Amounts travel as decimal strings and are only changed with HINCRBY, so counters are
exact 64-bit integers; Lua numbers (doubles) are used for comparisons only, exact
because every amount is at most ``MAX_STORE_INT`` (2**53 - 1).

A script that fails half-way keeps the writes it made before the error, so every
script checks its numeric arguments (``bad_args``) before it writes anything and
answers ``invalid`` with the argument's index (the client raises ValueError). And no
value already stored can make a script fail: ``incr`` never fails on a field that
holds no integer or would pass 64 bits, ``num`` reads anything as a number, ``neg``
takes what a hold holds; otherwise one bad field would fail every read of its
workflow for as long as it lives.
"""

from __future__ import annotations

# Argument checks, shared by the tenant scripts (PRELUDE) and the epoch's CHECK.
ARGS = """
local MAX_INT = 9007199254740991
-- kind 'i': a decimal integer in [0, 2**53 - 1]; 'n': a finite number; 'o', 'm': the
-- same, or '' (none)
local function valid(kind, v)
  if v == nil then return false end
  if v == '' then return kind == 'o' or kind == 'm' end
  if kind == 'i' or kind == 'o' then
    return #v <= 16 and string.match(v, '^%d+$') ~= nil and tonumber(v) <= MAX_INT
  end
  local n = tonumber(v)
  return n ~= nil and n == n and n ~= math.huge and n ~= -math.huge
end

-- spec like 'i7 n9 o12': {'invalid', index} for the first argument not of its kind
local function bad_args(spec)
  for kind, i in string.gmatch(spec, '(%a)(%d+)') do
    if not valid(kind, ARGV[tonumber(i)]) then return {'invalid', tonumber(i)} end
  end
  return nil
end
"""

PRELUDE = (
    ARGS
    + """
local function guard()
  if ARGV[3] ~= '' then
    local t = redis.call('TIME')
    if tonumber(t[1]) + tonumber(t[2]) / 1000000 > tonumber(ARGV[3]) then
      return {'stale'}
    end
  end
  local mark = redis.call('GET', KEYS[1])
  if mark == ARGV[1] then return nil end
  if ARGV[2] == 'force' or (not mark and ARGV[2] == '0') then
    redis.call('SET', KEYS[1], ARGV[1])
    return nil
  end
  return {'lost', mark or ''}
end

-- the negation of a stored amount (nothing stored counts as 0)
local function neg(n)
  if not n or n == '' or n == '0' then return '0' end
  if string.sub(n, 1, 1) == '-' then return string.sub(n, 2) end
  return '-' .. n
end

-- any stored value as a number: missing, not a number or nan count as 0
local function num(v)
  local n = tonumber(v)
  if n == nil or n ~= n then return 0 end
  return n
end

-- HINCRBY that cannot fail. A field holding no integer (a hand edit) or that would
-- pass 64 bits is rewritten as its value as a double plus the delta, saturated at
-- 2**63 - 1024 (the largest double HINCRBY takes); a delta that is no number is 0.
local SATURATED = 9223372036854774784
local function incr(k, f, d)
  if type(redis.pcall('HINCRBY', k, f, d)) == 'number' then return end
  local delta = tonumber(d)
  if delta == nil or delta ~= delta then return end
  local v = num(redis.call('HGET', k, f)) + delta
  if v > SATURATED then v = SATURATED elseif v < -SATURATED then v = -SATURATED end
  if v ~= v or v == 0 then v = 0 end
  redis.call('HSET', k, f, string.format('%.0f', v))
end

local function hgetall(k)
  return redis.call('HGETALL', k)
end

-- A hold whose lease ran out is counted as spent at its held amount, in its
-- workflow and in the key window it was held against. Returns 1 if it was held.
local function expire_hold(base, id, keep_s)
  local hk = base .. ':h:' .. id
  redis.call('ZREM', base .. ':leases', id)
  local h = redis.call('HMGET', hk, 'amount', 'tokens', 'wid', 'period', 'state')
  if h[5] ~= 'held' then return 0 end
  local a, t = h[1] or '0', h[2] or '0'
  if h[3] then
    local w = base .. ':wf:' .. h[3]
    redis.call('ZREM', base .. ':wh:' .. h[3], id)
    if redis.call('EXISTS', w) == 1 then
      incr(w, 'spent_micros', a)
      incr(w, 'reserved_micros', neg(a))
      incr(w, 'tokens_spent', t)
      incr(w, 'tokens_reserved', neg(t))
      incr(w, 'expired_holds', 1)
      incr(w, 'expired_micros', a)
    end
  end
  if h[4] then
    local p = base .. ':kp:' .. h[4]
    redis.call('ZREM', base .. ':kh:' .. h[4], id)
    if redis.call('EXISTS', p) == 1 then
      incr(p, 'spent_micros', a)
      incr(p, 'reserved_micros', neg(a))
    end
  end
  redis.call('HSET', hk, 'state', 'expired')
  redis.call('EXPIRE', hk, keep_s)
  return 1
end

local function sweep(base, zkey, now, keep_s)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', zkey, '-inf', now)) do
    expire_hold(base, id, keep_s)
  end
  redis.call('ZREMRANGEBYSCORE', zkey, '-inf', now)
end
"""
)

# KEYS: 1 epoch marker, 2 workflow, 3 workflow holds, 4 window, 5 window holds,
#       6 new hold, 7 running, 8 tenant leases, 9 lease tenants
# ARGV: 1-3 guard, 4 base, 5 running member, 6 reservation id, 7 amount, 8 tokens,
#       9 now, 10 expires_at, 11 workflow id ('' = none), 12 cap_micros ('' = none),
#       13 cap_tokens ('' = none), 14 step given ('1'/'0'), 15 step,
#       16 key limit ('' = no key budget), 17 window start, 18 window ttl s,
#       19 workflow ttl s, 20 hold ttl s, 21 tenant
RESERVE = (
    PRELUDE
    + """
local bad = bad_args('m3 i7 i8 n9 n10 o12 o13 o16 o17 i18 i19 i20')
if bad then return bad end
local g = guard()
if g then return g end
local wf, base, now, amount, tokens = KEYS[2], ARGV[4], ARGV[9], ARGV[7], ARGV[8]
local has_wf, has_kb = ARGV[11] ~= '', ARGV[16] ~= ''
if has_wf then sweep(base, KEYS[3], now, ARGV[19]) end
if has_kb then sweep(base, KEYS[5], now, ARGV[19]) end

local function lower(field, cap)
  if cap == '' then return end
  local cur = redis.call('HGET', wf, field)
  if not cur or tonumber(cap) < num(cur) then redis.call('HSET', wf, field, cap) end
end

if has_wf then
  if redis.call('EXISTS', wf) == 0 then
    redis.call('HSET', wf, 'started_at', now, 'status', 'running')
  end
  lower('cap_micros', ARGV[12])
  lower('cap_tokens', ARGV[13])
  if ARGV[14] == '1' then redis.call('HSET', wf, 'step', ARGV[15]) end
  redis.call('HSET', wf, 'last_seen_at', now)
  if redis.call('HGET', wf, 'status') == 'running' then
    redis.call('ZADD', KEYS[7], now, ARGV[5])
  end
  redis.call('EXPIRE', wf, ARGV[19])
  local w = redis.call('HMGET', wf, 'cap_micros', 'cap_tokens', 'spent_micros',
    'reserved_micros', 'tokens_spent', 'tokens_reserved')
  if w[1] and num(w[3]) + num(w[4]) + tonumber(amount) > num(w[1]) then
    return {'workflow', hgetall(wf)}
  end
  if w[2] and num(w[5]) + num(w[6]) + tonumber(tokens) > num(w[2]) then
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
  redis.call('ZADD', KEYS[9], 'LT', ARGV[10], ARGV[21])
end
return {'ok', state}
"""
)

# KEYS: 1 epoch marker, 2 hold, 3 workflow, 4 workflow holds, 5 window, 6 window holds,
#       7 running, 8 ledger, 9 tenant leases
# ARGV: 1-3 guard, 4 reservation id, 5 cost, 6 counted tokens, 7 now, 8 sent,
#       9 retry, 10 fallback, 11 partial, 12 has workflow, 13 has window,
#       14 running member, 15 workflow ttl s, 16 ledger max length, 17 tombstone ttl s,
#       18 cap_micros ('' = none), 19 cap_tokens ('' = none), 20 re-created window
#       ttl s, 21 ledger entry count n, then n field/value pairs, then kind/count pairs
SETTLE = (
    PRELUDE
    + """
local bad = bad_args('m3 i5 i6 n7 i8 i9 i10 i11 i15 i16 i17 o18 o19 i20 i21')
if bad then return bad end
local kinds = 22 + 2 * tonumber(ARGV[21])
if kinds > #ARGV + 1 or (#ARGV - kinds) % 2 == 0 then return {'invalid', 21} end
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
  redis.call('EXPIRE', wf, ARGV[15])
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
for i = 22, 21 + 2 * tonumber(ARGV[21]) do entry[#entry + 1] = ARGV[i] end
redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[16], '*', unpack(entry))
return {outcome, state()}
"""
)
