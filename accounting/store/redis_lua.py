"""The Lua every ``RedisStore`` script shares: argument checks (``ARGS``, before any
write), and ``PRELUDE``: the epoch guard and fence (``guard``), safe arithmetic on
stored values (``incr``, ``num``, ``neg``), hold expiry (``expire_hold``, ``sweep``)
and ``keep_alive``. See ``redis_scripts`` for the key layout and the rules.
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

-- Keep a workflow's keys alive as long as the workflow: each key given gets ttl_s
-- (the workflow, its loop guard counts, the tenant's workflow index; EXPIRE on a key
-- that does not exist does nothing).
local function keep_alive(ttl_s, ...)
  for _, k in ipairs({...}) do redis.call('EXPIRE', k, ttl_s) end
end
"""
)
