"""Lua scripts of ``RedisStore`` for a workflow's life off the money path: status,
completion, cancellation, heartbeats and the paged listing. Key layout, ``guard()``
and the argument checks (``bad_args``, before any write): ``redis_scripts``.

Completion, cancellation and heartbeats share their keys and first arguments:
KEYS: 1 epoch marker, 2 workflow, 3 workflow holds, 4 the tenant's running index,
5 the tenant's workflow index, 6 fingerprint counts, 7 fingerprint recency;
ARGV: 1-3 guard, 4 base, 5 now, 6 expired-hold ttl s, 7 workflow id (running index
member), 8 workflow ttl s, then each script's own. Each sweeps the workflow's expired holds
first and answers ``ok`` and the workflow's fields (none: no such workflow; nothing
is created).
"""

from __future__ import annotations

from accounting.store.redis_lua import PRELUDE

# KEYS: 1 epoch marker, 2 workflow, 3 workflow holds
# ARGV: 1-3 guard, 4 base, 5 now, 6 expired-hold ttl s
STATUS = (
    PRELUDE
    + """
local bad = bad_args('m3 n5 i6')
if bad then return bad end
local g = guard()
if g then return g end
sweep(ARGV[4], KEYS[3], ARGV[5], ARGV[6])
return {'ok', hgetall(KEYS[2])}
"""
)

# The shared beginning of the life scripts (``spec``: their own argument checks).
_LIFE = """
local bad = bad_args('m3 n5 i6 i8 %s')
if bad then return bad end
local g = guard()
if g then return g end
local wf, now = KEYS[2], ARGV[5]
sweep(ARGV[4], KEYS[3], now, ARGV[6])
if redis.call('EXISTS', wf) == 0 then return {'ok', {}} end
"""


def _life(spec: str, body: str) -> str:
    return PRELUDE + _LIFE % spec + body


# ARGV: 9 outcome, 10 error given ('1'/'0'), 11 error
COMPLETE = _life(
    "",
    """
local status = redis.call('HGET', wf, 'status')
local function record()
  redis.call('HSET', wf, 'outcome', ARGV[9])
  if ARGV[10] == '1' then redis.call('HSET', wf, 'error', ARGV[11]) end
end
if status == 'cancelled' then
  if not redis.call('HGET', wf, 'outcome') then
    record()
    redis.call('HSETNX', wf, 'completed_at', now)
  end
elseif status ~= 'completed' then
  redis.call('HSET', wf, 'status', 'completed', 'completed_at', now)
  record()
end
redis.call('ZREM', KEYS[4], ARGV[7])
keep_alive(ARGV[8], wf, KEYS[5], KEYS[6], KEYS[7])
return {'ok', hgetall(wf)}
""",
)

# ARGV: 9 reason
CANCEL = _life(
    "",
    """
if not redis.call('HGET', wf, 'stop_reason') then
  redis.call('HSET', wf, 'stop_reason', ARGV[9], 'cancelled_at', now)
  if redis.call('HGET', wf, 'status') ~= 'completed' then
    redis.call('HSET', wf, 'status', 'cancelled')
  end
end
redis.call('ZREM', KEYS[4], ARGV[7])
keep_alive(ARGV[8], wf, KEYS[5], KEYS[6], KEYS[7])
return {'ok', hgetall(wf)}
""",
)

# ARGV: 9 step given ('1'/'0'), 10 step, 11 progress ('' = not given)
HEARTBEAT = _life(
    "m11",
    """
redis.call('HSET', wf, 'last_seen_at', now, 'heartbeat_at', now)
if ARGV[9] == '1' then redis.call('HSET', wf, 'step', ARGV[10]) end
if ARGV[11] ~= '' then redis.call('HSET', wf, 'progress', ARGV[11]) end
if redis.call('HGET', wf, 'status') == 'running' then
  redis.call('ZADD', KEYS[4], now, ARGV[7])
end
keep_alive(ARGV[8], wf, KEYS[4], KEYS[5], KEYS[6], KEYS[7])
return {'ok', hgetall(wf)}
""",
)

# Up to ``want`` of the tenant's workflows with the status, from the index entries
# after the cursor (at most ``scan`` entries looked at per call), each swept first;
# index entries whose workflow expired are dropped.
# KEYS: 1 epoch marker, 2 the tenant's workflow index
# ARGV: 1-3 guard, 4 base, 5 sweep time, 6 expired-hold ttl s, 7 status (running,
#       stalled, completed, cancelled), 8 idle_before, 9 cursor ('' = from the start),
#       10 want, 11 scan
# Reply: ok, {id, fields, id, fields, ...}, the last id looked at ('' = none),
#        '1' when the index has no more entries after what was looked at
LIST = (
    PRELUDE
    + """
local bad = bad_args('m3 n5 i6 n8 i10 i11')
if bad then return bad end
local g = guard()
if g then return g end
local base, want, scan = ARGV[4], tonumber(ARGV[10]), tonumber(ARGV[11])
local status, stalled = ARGV[7], ARGV[7] == 'stalled'
if stalled then status = 'running' end
local from = '-'
if ARGV[9] ~= '' then from = '(' .. ARGV[9] end
local ids = redis.call('ZRANGEBYLEX', KEYS[2], from, '+', 'LIMIT', 0, scan)
local found, gone, last, n = {}, {}, '', 0
for _, wid in ipairs(ids) do
  last = wid
  local wf = base .. ':wf:' .. wid
  local w = redis.call('HMGET', wf, 'status', 'last_seen_at')
  if not w[1] and redis.call('EXISTS', wf) == 0 then
    gone[#gone + 1] = wid
  else
    local st = w[1]
    if st ~= 'completed' and st ~= 'cancelled' then st = 'running' end
    if st == status and (not stalled or num(w[2]) < tonumber(ARGV[8])) then
      sweep(base, base .. ':wh:' .. wid, ARGV[5], ARGV[6])
      found[#found + 1] = wid
      found[#found + 1] = hgetall(wf)
      n = n + 1
      if n >= want then break end
    end
  end
end
if #gone > 0 then redis.call('ZREM', KEYS[2], unpack(gone)) end
local ended = '0'
if n < want and #ids < scan then ended = '1' end
return {'ok', found, last, ended}
"""
)
