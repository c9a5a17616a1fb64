"""The breaker's Lua scripts: each runs atomically inside Redis, so several workers racing on
one breaker always agree on its state (no read-modify-write between processes).

Key layout per scope (four keys, in this order): state hash, calls zset, reverts zset, probes
zset. Scores are epoch seconds; members are event ids, which makes recording idempotent.
Every script returns the transitions it made as flat ``scope|from|to|reason`` strings, so
the caller can audit them.
"""

from __future__ import annotations

KEYS_PER_SCOPE = 4

#: ARGV: now, cooldown_s, probe_limit, probe_timeout_s, category, token, scope names...
ALLOW = r"""
local now = tonumber(ARGV[1])
local cooldown = tonumber(ARGV[2])
local probe_limit = tonumber(ARGV[3])
local probe_timeout = tonumber(ARGV[4])
local category = ARGV[5]
local token = ARGV[6]
local n = #KEYS / 4
local changes = {}
local denied = nil
local half = {}
for i = 0, n - 1 do
  local h = KEYS[i * 4 + 1]
  local probes = KEYS[i * 4 + 4]
  local scope = ARGV[7 + i]
  local state = redis.call('HGET', h, 'state') or 'CLOSED'
  if state == 'OPEN' then
    local opened = tonumber(redis.call('HGET', h, 'opened_at') or '0')
    if now - opened >= cooldown then
      redis.call('HSET', h, 'state', 'HALF_OPEN', 'half_open_at', now, 'probe_successes', 0,
                 'reason', 'cooldown elapsed')
      redis.call('DEL', probes)
      table.insert(changes, scope .. '|OPEN|HALF_OPEN|cooldown elapsed')
      state = 'HALF_OPEN'
    elseif denied == nil then
      denied = 'breaker OPEN at ' .. scope .. ' (' .. (redis.call('HGET', h, 'reason') or '') ..
               '); retry in ' .. math.ceil(cooldown - (now - opened)) .. 's'
    end
  end
  if state == 'HALF_OPEN' then
    local expired = redis.call('ZRANGEBYSCORE', probes, '-inf', now)
    if #expired > 0 then
      redis.call('HSET', h, 'state', 'OPEN', 'opened_at', now, 'reason',
                 'half-open probe timed out')
      redis.call('DEL', probes)
      table.insert(changes, scope .. '|HALF_OPEN|OPEN|half-open probe timed out')
      if denied == nil then
        denied = 'breaker OPEN at ' .. scope .. ' (half-open probe timed out)'
      end
    else
      table.insert(half, i)
    end
  end
  if state == 'FORCED_OPEN' and denied == nil then
    local why = redis.call('HGET', h, 'reason') or ''
    denied = 'breaker FORCED_OPEN at ' .. scope .. ' (' .. why .. '); run heal breaker reset'
  end
end
if denied ~= nil then return {0, denied, '', changes} end
if #half == 0 then return {1, 'closed', '', changes} end
if category ~= 'SAFE' then
  return {0, 'breaker HALF_OPEN: only SAFE fixes may probe, this one is ' .. category, '', changes}
end
for _, i in ipairs(half) do
  if redis.call('ZCARD', KEYS[i * 4 + 4]) >= probe_limit then
    return {0, 'breaker HALF_OPEN at ' .. ARGV[7 + i] .. ': ' .. probe_limit ..
               ' probe(s) already in flight', '', changes}
  end
end
for _, i in ipairs(half) do
  redis.call('ZADD', KEYS[i * 4 + 4], now + probe_timeout, token)
end
return {1, 'half-open probe', token, changes}
"""

#: ARGV: now, window_s, success_to_close, kind ('revert'|'success'), event_id, ttl_s,
#:       then per scope: name, threshold, min_volume
RECORD = r"""
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local to_close = tonumber(ARGV[3])
local kind = ARGV[4]
local member = ARGV[5]
local ttl = tonumber(ARGV[6])
local n = #KEYS / 4
local changes = {}
for i = 0, n - 1 do
  local h, calls, reverts, probes = KEYS[i*4+1], KEYS[i*4+2], KEYS[i*4+3], KEYS[i*4+4]
  local scope = ARGV[7 + i * 3]
  local threshold = tonumber(ARGV[8 + i * 3])
  local min_volume = tonumber(ARGV[9 + i * 3])
  local added = redis.call('ZADD', calls, now, member)
  redis.call('ZREMRANGEBYSCORE', calls, '-inf', now - window)
  redis.call('EXPIRE', calls, ttl)
  if kind == 'revert' then
    redis.call('ZADD', reverts, now, member)
    redis.call('ZREMRANGEBYSCORE', reverts, '-inf', now - window)
    redis.call('EXPIRE', reverts, ttl)
  end
  local state = redis.call('HGET', h, 'state') or 'CLOSED'
  if added == 1 then
    if state == 'HALF_OPEN' and kind == 'revert' then
      redis.call('HSET', h, 'state', 'OPEN', 'opened_at', now,
                 'reason', 'revert during half-open probe')
      redis.call('DEL', probes)
      table.insert(changes, scope .. '|HALF_OPEN|OPEN|revert during half-open probe')
    elseif state == 'HALF_OPEN' then
      redis.call('ZPOPMIN', probes)
      local ok = redis.call('HINCRBY', h, 'probe_successes', 1)
      if ok >= to_close then
        redis.call('HSET', h, 'state', 'CLOSED', 'reason', ok .. ' successful probe(s)')
        redis.call('DEL', probes, reverts, calls)
        table.insert(changes, scope .. '|HALF_OPEN|CLOSED|' .. ok .. ' successful probe(s)')
      end
    elseif state == 'CLOSED' and kind == 'revert' then
      local nrev = redis.call('ZCARD', reverts)
      local ncalls = redis.call('ZCARD', calls)
      if nrev >= threshold and ncalls >= min_volume then
        local why = nrev .. ' revert(s) in ' .. window .. 's (threshold ' .. threshold .. ')'
        redis.call('HSET', h, 'state', 'OPEN', 'opened_at', now, 'reason', why)
        table.insert(changes, scope .. '|CLOSED|OPEN|' .. why)
      end
    end
  end
end
return changes
"""
