"""Lua scripts of ``RedisStore`` off the request's money path: admin caps, the
periodic sweep of one tenant, idempotency records, and the store-wide epoch
(``redis_epoch``). Key layout, ``guard()`` and the argument checks (``bad_args``,
before any write): ``redis_scripts``; a workflow's life: ``redis_scripts_workflows``.
"""

from __future__ import annotations

from accounting.store.redis_lua import ARGS, PRELUDE

# KEYS: 1 epoch marker, 2 workflow
# ARGV: 1-3 guard, 4 cap_micros ('' = none), 5 cap_tokens ('' = none)
SET_CAP = (
    PRELUDE
    + """
local bad = bad_args('m3 o4 o5')
if bad then return bad end
local g = guard()
if g then return g end
local wf = KEYS[2]
if redis.call('EXISTS', wf) == 0 then return {'ok', {}} end
local fields = {'cap_micros', 'cap_tokens'}
for i = 1, 2 do
  if ARGV[3 + i] == '' then
    redis.call('HDEL', wf, fields[i])
  else
    redis.call('HSET', wf, fields[i], ARGV[3 + i])
  end
end
return {'ok', hgetall(wf)}
"""
)

# Expire up to ``limit`` of the tenant's holds whose lease ran out, and drop from the
# tenant's running index the workflows idle since before the cutoff (their state has
# expired). Every key is the tenant's: one slot.
# KEYS: 1 epoch marker, 2 tenant leases, 3 tenant running index
# ARGV: 1-3 guard, 4 base, 5 now, 6 expired-hold ttl s, 7 running cutoff (exclusive),
#       8 limit
# Reply: ok, holds expired, index entries removed, 1 if more may be due
SWEEP_TENANT = (
    PRELUDE
    + """
local bad = bad_args('m3 n5 i6 n7 i8')
if bad then return bad end
local g = guard()
if g then return g end
local limit = tonumber(ARGV[8])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[5], 'LIMIT', 0, limit)
local expired = 0
for _, id in ipairs(due) do
  expired = expired + expire_hold(ARGV[4], id, ARGV[6])
  redis.call('ZREM', KEYS[2], id)
end
local removed = redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[7])
local more = 0
if #due == limit then more = 1 end
return {'ok', expired, removed, more}
"""
)

# KEYS: 1 epoch marker, 2 record
# ARGV: 1-3 guard, 4 fingerprint, 5 new token, 6 now, 7 lease_until, 8 lease ms
IDEM_CLAIM = (
    PRELUDE
    + """
local bad = bad_args('m3 n6 n7 i8')
if bad then return bad end
local g = guard()
if g then return g end
local r = redis.call('HMGET', KEYS[2], 'fingerprint', 'state', 'lease_until', 'record',
  'expires_at')
if r[1] and num(r[5]) > tonumber(ARGV[6]) then
  if r[1] ~= ARGV[4] then return {'conflict'} end
  if r[2] == 'completed' then return {'replay', r[4]} end
  return {'in_flight', r[3]}
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'fingerprint', ARGV[4], 'state', 'pending', 'token', ARGV[5],
  'lease_until', ARGV[7], 'expires_at', ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[8])
return {'claimed'}
"""
)

# KEYS: 1 epoch marker, 2 record. ARGV: 1-3 guard, 4 token, 5 record, 6 expires_at, 7 ttl ms
IDEM_COMPLETE = (
    PRELUDE
    + """
local bad = bad_args('m3 n6 i7')
if bad then return bad end
local g = guard()
if g then return g end
local r = redis.call('HMGET', KEYS[2], 'state', 'token')
if r[1] ~= 'pending' or r[2] ~= ARGV[4] then return {'ok', 0} end
redis.call('HSET', KEYS[2], 'state', 'completed', 'record', ARGV[5], 'expires_at', ARGV[6])
redis.call('HDEL', KEYS[2], 'lease_until')
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return {'ok', 1}
"""
)

# KEYS: 1 epoch marker, 2 record. ARGV: 1-3 guard, 4 token
IDEM_RELEASE = (
    PRELUDE
    + """
local bad = bad_args('m3')
if bad then return bad end
local g = guard()
if g then return g end
local r = redis.call('HMGET', KEYS[2], 'state', 'token')
if r[1] == 'pending' and r[2] == ARGV[4] then redis.call('DEL', KEYS[2]) end
return {'ok'}
"""
)

# -- the store-wide epoch (see redis_epoch) -----------------------------------------
# KEYS: 1 epoch, 2 reset_detected. ARGV: 1 a new boot epoch, used if there is none,
# 2 an older layout's epoch ('' = none), used before a new one
OPEN = """
local found = redis.call('GET', KEYS[2])
if found then return {'reset', found} end
local e = redis.call('GET', KEYS[1])
if not e then
  e = ARGV[1]
  if ARGV[2] and ARGV[2] ~= '' then e = ARGV[2] end
  redis.call('SET', KEYS[1], e)
end
return {'ok', e}
"""

# KEYS: 1 epoch, 2 reset_detected, 3 ready
# ARGV: 1 mode ('check' or 'lost'), 2 this process's epoch ('' = none), 3 detected_at,
#       4 tenant (lost), 5 ready ttl ms ('' = no write), 6 tenant seen before ('1'/'0')
# Reply: ok | adopt <epoch> (an operator accepted a reset) | force (lost: rewrite the
# marker of a tenant this process never saw) | reset <description>
CHECK = (
    ARGS
    + """
local bad = bad_args('n3 o5')
if bad then return bad end
if ARGV[5] ~= '' then redis.call('SET', KEYS[3], '1', 'PX', ARGV[5]) end
local found = redis.call('GET', KEYS[2])
if found then return {'reset', found} end
local e, mine, lost = redis.call('GET', KEYS[1]), ARGV[2], ARGV[1] == 'lost'
if e and e == mine then
  if not lost then return {'ok', e} end
  if ARGV[6] == '0' then return {'force', e} end
elseif e and string.sub(e, 1, 9) == 'accepted:' then
  return {'adopt', e}
end
local reason
if lost then
  reason = 'the data of gateway key ' .. ARGV[4] ..
    ' vanished or was replaced (its epoch marker is missing or differs)'
elseif not e then
  reason = 'the store epoch is gone (Redis restarted without persistence, was flushed, ' ..
    'or failed over to an empty replica)'
else
  reason = 'the store epoch changed (Redis lost its data and a new store was started on it)'
end
local info = cjson.encode({detected_at = tonumber(ARGV[3]), reason = reason, epoch = mine})
redis.call('SET', KEYS[2], info)
return {'reset', info}
"""
)

# KEYS: 1 epoch, 2 reset_detected. ARGV: 1 the new epoch
ACCEPT = """
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1])
return {'ok', ARGV[1]}
"""
