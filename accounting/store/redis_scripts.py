"""Lua scripts of ``RedisStore``: each read-modify-write is one script, so it is atomic.

Key layout (``B`` = ``<prefix>{<tenant>}``, the tenant being the escaped gateway key):

* ``B:wf:<workflow>``  hash   the workflow (fields named like ``WorkflowState``,
  ``tk:<kind>`` for tokens by kind)
* ``B:wh:<workflow>``  zset   the workflow's live holds, scored by expires_at
* ``B:h:<id>``         hash   one hold: amount, tokens, wid, period, expires_at, state
* ``B:kp:<start>``     hash   the key's budget window: spent_micros, reserved_micros
* ``B:kh:<start>``     zset   the window's live holds, scored by expires_at
* ``<prefix>running``  zset   running workflows (``<tenant>:<workflow>``) by last_seen_at
* ``<prefix>ledger``   stream one entry per settle, capped (``MAXLEN ~``)
* ``<prefix>idem:<scope>`` hash an idempotency record

Amounts travel as decimal strings and are only changed with HINCRBY, so counters are
exact 64-bit integers; Lua numbers (doubles) are used for comparisons only.
"""

from __future__ import annotations

_PRELUDE = """
local function neg(n)
  if n == '0' then return '0' end
  return '-' .. n
end

local function hgetall(k)
  return redis.call('HGETALL', k)
end

-- A hold whose lease ran out is counted as spent at its held amount.
local function expire_hold(base, id, keep_s)
  local hk = base .. ':h:' .. id
  local h = redis.call('HMGET', hk, 'amount', 'tokens', 'wid', 'period', 'state')
  if h[5] ~= 'held' then return end
  local a, t = h[1], h[2]
  if h[3] then
    local w = base .. ':wf:' .. h[3]
    redis.call('ZREM', base .. ':wh:' .. h[3], id)
    if redis.call('EXISTS', w) == 1 then
      redis.call('HINCRBY', w, 'spent_micros', a)
      redis.call('HINCRBY', w, 'reserved_micros', neg(a))
      redis.call('HINCRBY', w, 'tokens_spent', t)
      redis.call('HINCRBY', w, 'tokens_reserved', neg(t))
      redis.call('HINCRBY', w, 'expired_holds', 1)
      redis.call('HINCRBY', w, 'expired_micros', a)
    end
  end
  if h[4] then
    local p = base .. ':kp:' .. h[4]
    redis.call('ZREM', base .. ':kh:' .. h[4], id)
    if redis.call('EXISTS', p) == 1 then
      redis.call('HINCRBY', p, 'spent_micros', a)
      redis.call('HINCRBY', p, 'reserved_micros', neg(a))
    end
  end
  redis.call('HSET', hk, 'state', 'expired')
  redis.call('EXPIRE', hk, keep_s)
end

local function sweep(base, zkey, now, keep_s)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', zkey, '-inf', now)) do
    expire_hold(base, id, keep_s)
  end
  redis.call('ZREMRANGEBYSCORE', zkey, '-inf', now)
end

local function num(v)
  if v then return tonumber(v) end
  return 0
end
"""

# KEYS: 1 workflow, 2 workflow holds, 3 window, 4 window holds, 5 new hold, 6 running
# ARGV: 1 base, 2 running member, 3 reservation id, 4 amount, 5 tokens, 6 now,
#       7 expires_at, 8 workflow id ('' = none), 9 cap_micros ('' = none),
#       10 cap_tokens ('' = none), 11 step given ('1'/'0'), 12 step,
#       13 key limit ('' = no key budget), 14 window start, 15 window ttl s,
#       16 workflow ttl s, 17 hold ttl s
RESERVE = (
    _PRELUDE
    + """
local wf, base, now, amount, tokens = KEYS[1], ARGV[1], ARGV[6], ARGV[4], ARGV[5]
local has_wf, has_kb = ARGV[8] ~= '', ARGV[13] ~= ''
if has_wf then sweep(base, KEYS[2], now, ARGV[16]) end
if has_kb then sweep(base, KEYS[4], now, ARGV[16]) end

local function lower(field, cap)
  if cap == '' then return end
  local cur = redis.call('HGET', wf, field)
  if not cur or tonumber(cap) < tonumber(cur) then redis.call('HSET', wf, field, cap) end
end

if has_wf then
  if redis.call('EXISTS', wf) == 0 then
    redis.call('HSET', wf, 'started_at', now, 'status', 'running')
  end
  lower('cap_micros', ARGV[9])
  lower('cap_tokens', ARGV[10])
  if ARGV[11] == '1' then redis.call('HSET', wf, 'step', ARGV[12]) end
  redis.call('HSET', wf, 'last_seen_at', now)
  if redis.call('HGET', wf, 'status') == 'running' then
    redis.call('ZADD', KEYS[6], now, ARGV[2])
  end
  redis.call('EXPIRE', wf, ARGV[16])
  local w = redis.call('HMGET', wf, 'cap_micros', 'cap_tokens', 'spent_micros',
    'reserved_micros', 'tokens_spent', 'tokens_reserved')
  if w[1] and num(w[3]) + num(w[4]) + tonumber(amount) > tonumber(w[1]) then
    return {'workflow', hgetall(wf)}
  end
  if w[2] and num(w[5]) + num(w[6]) + tonumber(tokens) > tonumber(w[2]) then
    return {'tokens', hgetall(wf)}
  end
end

if has_kb then
  local p = redis.call('HMGET', KEYS[3], 'spent_micros', 'reserved_micros')
  if num(p[1]) + num(p[2]) + tonumber(amount) > tonumber(ARGV[13]) then
    local state = {}
    if has_wf then state = hgetall(wf) end
    return {'key', state, p[1] or '0', p[2] or '0'}
  end
end

redis.call('HSET', KEYS[5], 'amount', amount, 'tokens', tokens, 'expires_at', ARGV[7],
  'state', 'held')
redis.call('EXPIRE', KEYS[5], ARGV[17])
local state = {}
if has_wf then
  redis.call('HSET', KEYS[5], 'wid', ARGV[8])
  redis.call('HINCRBY', wf, 'reserved_micros', amount)
  redis.call('HINCRBY', wf, 'tokens_reserved', tokens)
  redis.call('ZADD', KEYS[2], ARGV[7], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[17])
  state = hgetall(wf)
end
if has_kb then
  redis.call('HSET', KEYS[5], 'period', ARGV[14])
  redis.call('HINCRBY', KEYS[3], 'reserved_micros', amount)
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[15])
  redis.call('EXPIRE', KEYS[4], ARGV[15])
end
return {'ok', state}
"""
)

# KEYS: 1 hold, 2 workflow, 3 workflow holds, 4 window, 5 window holds, 6 running,
#       7 ledger
# ARGV: 1 reservation id, 2 cost, 3 counted tokens, 4 now, 5 sent, 6 retry,
#       7 fallback, 8 partial, 9 has workflow, 10 has window, 11 running member,
#       12 workflow ttl s, 13 ledger max length, 14 ledger entry count n,
#       then n field/value pairs of the ledger entry, then kind/count pairs
SETTLE = (
    _PRELUDE
    + """
local wf, rid, now, cost = KEYS[2], ARGV[1], ARGV[4], ARGV[2]
local has_wf, has_kb = ARGV[9] == '1', ARGV[10] == '1'
local h = redis.call('HMGET', KEYS[1], 'amount', 'tokens', 'state')
if not h[1] then
  if has_wf then return {'none', hgetall(wf)} end
  return {'none', {}}
end
local a, t, held = h[1], h[2], h[3] == 'held'
if has_wf then redis.call('ZREM', KEYS[3], rid) end
if has_wf and redis.call('EXISTS', wf) == 1 then
  if held then
    redis.call('HINCRBY', wf, 'reserved_micros', neg(a))
    redis.call('HINCRBY', wf, 'tokens_reserved', neg(t))
  else
    redis.call('HINCRBY', wf, 'spent_micros', neg(a))
    redis.call('HINCRBY', wf, 'tokens_spent', neg(t))
    redis.call('HINCRBY', wf, 'expired_micros', neg(a))
  end
  redis.call('HINCRBY', wf, 'spent_micros', cost)
  redis.call('HINCRBY', wf, 'tokens_spent', ARGV[3])
  redis.call('HINCRBY', wf, 'calls', ARGV[5])
  redis.call('HINCRBY', wf, 'retries', ARGV[6])
  redis.call('HINCRBY', wf, 'fallbacks', ARGV[7])
  redis.call('HINCRBY', wf, 'partial_streams', ARGV[8])
  local first_kind = 15 + 2 * tonumber(ARGV[14])
  for i = first_kind, #ARGV, 2 do
    redis.call('HINCRBY', wf, 'tk:' .. ARGV[i], ARGV[i + 1])
  end
  redis.call('HSET', wf, 'last_seen_at', now)
  if redis.call('HGET', wf, 'status') == 'running' then
    redis.call('ZADD', KEYS[6], now, ARGV[11])
  end
  redis.call('EXPIRE', wf, ARGV[12])
end
if has_kb then
  redis.call('ZREM', KEYS[5], rid)
  if redis.call('EXISTS', KEYS[4]) == 1 then
    if held then
      redis.call('HINCRBY', KEYS[4], 'reserved_micros', neg(a))
    else
      redis.call('HINCRBY', KEYS[4], 'spent_micros', neg(a))
    end
    redis.call('HINCRBY', KEYS[4], 'spent_micros', cost)
  end
end
redis.call('DEL', KEYS[1])
local entry = {}
for i = 15, 14 + 2 * tonumber(ARGV[14]) do entry[#entry + 1] = ARGV[i] end
redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[13], '*', unpack(entry))
if has_wf then return {'ok', hgetall(wf)} end
return {'ok', {}}
"""
)

# KEYS: 1 workflow, 2 running. ARGV: 1 now, 2 running member, 3 workflow ttl s
COMPLETE = """
local wf = KEYS[1]
if redis.call('EXISTS', wf) == 0 then return {} end
if redis.call('HGET', wf, 'status') ~= 'completed' then
  redis.call('HSET', wf, 'status', 'completed', 'completed_at', ARGV[1])
end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('EXPIRE', wf, ARGV[3])
return redis.call('HGETALL', wf)
"""

# KEYS: 1 workflow. ARGV: 1 cap_micros ('' = none), 2 cap_tokens ('' = none)
SET_CAP = """
local wf = KEYS[1]
if redis.call('EXISTS', wf) == 0 then return {} end
local fields = {'cap_micros', 'cap_tokens'}
for i = 1, 2 do
  if ARGV[i] == '' then
    redis.call('HDEL', wf, fields[i])
  else
    redis.call('HSET', wf, fields[i], ARGV[i])
  end
end
return redis.call('HGETALL', wf)
"""

# KEYS: 1 record. ARGV: 1 fingerprint, 2 new token, 3 now, 4 lease_until, 5 lease ms
IDEM_CLAIM = """
local r = redis.call('HMGET', KEYS[1], 'fingerprint', 'state', 'lease_until', 'record',
  'expires_at')
if r[1] and tonumber(r[5]) > tonumber(ARGV[3]) then
  if r[1] ~= ARGV[1] then return {'conflict'} end
  if r[2] == 'completed' then return {'replay', r[4]} end
  return {'in_flight', r[3]}
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'state', 'pending', 'token', ARGV[2],
  'lease_until', ARGV[4], 'expires_at', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {'claimed'}
"""

# KEYS: 1 record. ARGV: 1 token, 2 record, 3 expires_at, 4 ttl ms
IDEM_COMPLETE = """
local r = redis.call('HMGET', KEYS[1], 'state', 'token')
if r[1] ~= 'pending' or r[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'completed', 'record', ARGV[2], 'expires_at', ARGV[3])
redis.call('HDEL', KEYS[1], 'lease_until')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS: 1 record. ARGV: 1 token
IDEM_RELEASE = """
local r = redis.call('HMGET', KEYS[1], 'state', 'token')
if r[1] == 'pending' and r[2] == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""
