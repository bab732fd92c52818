"""The Lua scripts: each step that must be atomic in Redis is one script call.

A room's metadata is created on first use with an epoch the caller proposes (Redis
scripts cannot make good random numbers). If Redis lost the room (restart without
persistence, key expiry, FLUSHALL), the next call creates a new epoch, which is how
nodes and clients learn that the history they knew is gone.
"""

from __future__ import annotations

# KEYS: meta, log, ids, idt. ARGV[1]: proposed epoch, ARGV[2]: room TTL in ms (0: none).
_ENSURE_META = """
local function ensure_meta(proposed, ttl_ms)
  local epoch = redis.call('HGET', KEYS[1], 'epoch')
  if not epoch then
    epoch = proposed
    redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
    redis.call('HSET', KEYS[1], 'epoch', epoch, 'latest', 0, 'bytes', 0)
  end
  if ttl_ms > 0 then
    for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl_ms) end
  end
  return epoch
end
"""

# Drop the oldest entries written before ``cutoff`` (ms; entries carry their time in
# field ``t``), keeping at least ``keep`` entries. KEYS[1] meta, KEYS[2] log.
_TRIM_AGED = """
local function trim_aged(cutoff, keep)
  local count = redis.call('XLEN', KEYS[2])
  while count > keep do
    local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
    local t = oldest[2][6]
    if not t or tonumber(t) >= cutoff then break end
    redis.call('XDEL', KEYS[2], oldest[1])
    redis.call('HINCRBY', KEYS[1], 'bytes', -#oldest[2][4])
    count = count - 1
  end
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# ARGV: proposed epoch, ttl ms, data, kind, id ('' for none), max messages, max bytes,
#       max ids, id ttl ms, channel, max age ms (0: none), PUBLISH or SPUBLISH (a
#       cluster's shard channel: it shares the room's hash tag, so its slot).
# Returns {epoch, offset, duplicate (0/1)}.
PUBLISH = (
    _ENSURE_META
    + _TRIM_AGED
    + """
local epoch = ensure_meta(ARGV[1], tonumber(ARGV[2]))
local data, kind, id = ARGV[3], ARGV[4], ARGV[5]
local max_ids, id_ttl = tonumber(ARGV[8]), tonumber(ARGV[9])
local now = now_ms()
if id ~= '' and max_ids > 0 then
  local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - id_ttl, 'LIMIT', 0, 100)
  if #expired > 0 then
    redis.call('HDEL', KEYS[3], unpack(expired))
    redis.call('ZREM', KEYS[4], unpack(expired))
  end
  local known = redis.call('HGET', KEYS[3], id)
  if known then return {epoch, tonumber(known), 1} end
end
local offset = redis.call('HINCRBY', KEYS[1], 'latest', 1)
redis.call('XADD', KEYS[2], offset .. '-0', 'k', kind, 'd', data, 't', now)
local max_age = tonumber(ARGV[11])
if max_age > 0 then trim_aged(now - max_age, 1) end
local bytes = redis.call('HINCRBY', KEYS[1], 'bytes', #data)
local count = redis.call('XLEN', KEYS[2])
local max_count, max_bytes = tonumber(ARGV[6]), tonumber(ARGV[7])
while count > 1 and (count > max_count or bytes > max_bytes) do
  local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  redis.call('XDEL', KEYS[2], oldest[1])
  bytes = bytes - #oldest[2][4]
  count = count - 1
end
redis.call('HSET', KEYS[1], 'bytes', bytes)
if id ~= '' and max_ids > 0 then
  redis.call('HSET', KEYS[3], id, offset)
  redis.call('ZADD', KEYS[4], now, id)
  local extra = redis.call('ZCARD', KEYS[4]) - max_ids
  if extra > 0 then
    local old = redis.call('ZPOPMIN', KEYS[4], extra)
    for i = 1, #old, 2 do redis.call('HDEL', KEYS[3], old[i]) end
  end
  local ttl_ms = tonumber(ARGV[2])
  if ttl_ms > 0 then
    redis.call('PEXPIRE', KEYS[3], ttl_ms)
    redis.call('PEXPIRE', KEYS[4], ttl_ms)
  end
end
redis.call(ARGV[12], ARGV[10], epoch .. '\\n' .. offset .. '\\n' .. kind .. '\\n' .. data)
return {epoch, offset, 0}
"""
)

# ARGV: proposed epoch, ttl ms, after (-1: none), max entries to return, max age ms
#       (0: none).
# Returns {epoch, latest, first_kept, {offset, kind, data}, ...}.
HISTORY = (
    _ENSURE_META
    + _TRIM_AGED
    + """
local epoch = ensure_meta(ARGV[1], tonumber(ARGV[2]))
local max_age = tonumber(ARGV[5])
if max_age > 0 then trim_aged(now_ms() - max_age, 0) end
local latest = tonumber(redis.call('HGET', KEYS[1], 'latest'))
local first_kept = latest + 1
local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
if oldest then first_kept = tonumber(string.match(oldest[1], '^(%d+)')) end
local reply = {epoch, latest, first_kept}
local after = tonumber(ARGV[3])
if after >= 0 and after < latest then
  local start = math.max(after + 1, first_kept)
  local entries = redis.call('XRANGE', KEYS[2], start .. '-0', '+', 'COUNT', tonumber(ARGV[4]))
  for _, e in ipairs(entries) do
    reply[#reply + 1] = {tonumber(string.match(e[1], '^(%d+)')), e[2][2], e[2][4]}
  end
end
return reply
"""
)

# Redis went back in time (a restart from an older snapshot): offsets already handed out
# would be handed out again with other messages. Start a new epoch instead, unless another
# node did so first. ARGV: epoch seen, new epoch, ttl ms. Returns the current epoch.
NEW_EPOCH = (
    _ENSURE_META
    + """
local epoch = ensure_meta(ARGV[2], tonumber(ARGV[3]))
if epoch == ARGV[1] then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[2], 'latest', 0, 'bytes', 0)
  epoch = ARGV[2]
end
return epoch
"""
)
