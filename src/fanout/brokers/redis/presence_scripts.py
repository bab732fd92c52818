"""The presence Lua scripts: each call touches one room's four presence keys (one slot).

KEYS, in ``PresenceKeys.all()`` order:

1. ``p:conns`` hash   connection id -> member JSON
2. ``p:exp``   zset   connection id -> expiry (unix ms, Redis' clock)
3. ``p:users`` hash   user -> how many entries of ``p:conns`` belong to it
4. ``p:uexp``  zset   user -> the latest expiry written for one of its connections

Invariant: ``p:users`` counts the entries of ``p:conns``, expired or not; a user leaves
``p:users`` and ``p:uexp`` with its last entry. Every script first sweeps at most
``batch`` expired connections (removing them from both connection keys and counting
their users down), so the cost of a call is bounded whatever the room's size and however
many entries a dead node left behind. Counts do not wait for the sweep: live
connections are ``ZCOUNT p:exp (now +inf`` and live users ``ZCOUNT p:uexp (now +inf``
(a user whose connections all expired has a latest expiry in the past). Every write
sets the four keys' TTL to the entries' TTL, so an abandoned room leaves nothing.

The user travels as one argument: ``''`` for an anonymous connection, ``'u' .. user``
otherwise (so an empty user name is still a user).
"""

from __future__ import annotations

_COMMON = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function user_of(json)
  local user = cjson.decode(json)['user']
  if type(user) == 'string' then return user end
  return nil
end

local function drop_user(user)
  if user and redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then
    redis.call('HDEL', KEYS[3], user)
    redis.call('ZREM', KEYS[4], user)
  end
end

-- Remove at most `batch` expired connections; returns how many were removed.
local function sweep(now, batch)
  local expired = redis.call('ZRANGE', KEYS[2], '-inf', now, 'BYSCORE', 'LIMIT', 0, batch)
  for _, conn in ipairs(expired) do
    local json = redis.call('HGET', KEYS[1], conn)
    if json then
      redis.call('HDEL', KEYS[1], conn)
      drop_user(user_of(json))
    end
  end
  if #expired > 0 then redis.call('ZREM', KEYS[2], unpack(expired)) end
  return #expired
end

local function keep_keys(ttl)
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
"""

# ARGV: ttl ms, sweep batch, then (conn, user arg, member JSON) for each member, each
# conn once. Join is a write of one member; refresh, of a batch of a room's members.
# A member whose JSON is unchanged (a refresh, mostly) only gets its new expiry; the
# batch costs five commands then, whatever its size.
WRITE = (
    _COMMON
    + """
local now = now_ms()
sweep(now, tonumber(ARGV[2]))
local ttl = tonumber(ARGV[1])
local expiry = now + ttl
local conns, expiries, user_expiries, changed = {}, {}, {}, {}
for i = 3, #ARGV, 3 do
  conns[#conns + 1] = ARGV[i]
  expiries[#expiries + 1] = expiry
  expiries[#expiries + 1] = ARGV[i]
  if ARGV[i + 1] ~= '' then
    user_expiries[#user_expiries + 1] = expiry
    user_expiries[#user_expiries + 1] = string.sub(ARGV[i + 1], 2)
  end
end
local old = redis.call('HMGET', KEYS[1], unpack(conns))
for n = 1, #conns do
  local i = 3 * n
  if old[n] ~= ARGV[i + 2] then
    changed[#changed + 1] = ARGV[i]
    changed[#changed + 1] = ARGV[i + 2]
    if old[n] then drop_user(user_of(old[n])) end
    if ARGV[i + 1] ~= '' then redis.call('HINCRBY', KEYS[3], string.sub(ARGV[i + 1], 2), 1) end
  end
end
if #changed > 0 then redis.call('HSET', KEYS[1], unpack(changed)) end
redis.call('ZADD', KEYS[2], unpack(expiries))
if #user_expiries > 0 then redis.call('ZADD', KEYS[4], 'GT', unpack(user_expiries)) end
keep_keys(ttl)
return 1
"""
)

# ARGV: sweep batch, conn. Returns 1 if the connection was there, else 0.
LEAVE = (
    _COMMON
    + """
sweep(now_ms(), tonumber(ARGV[1]))
local old = redis.call('HGET', KEYS[1], ARGV[2])
if not old then return 0 end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
drop_user(user_of(old))
return 1
"""
)

# ARGV: sweep batch. Returns {live connections, live users}.
STATS = (
    _COMMON
    + """
local now = now_ms()
sweep(now, tonumber(ARGV[1]))
local live = '(' .. now
return {redis.call('ZCOUNT', KEYS[2], live, '+inf'), redis.call('ZCOUNT', KEYS[4], live, '+inf')}
"""
)

# ARGV: sweep batch. Returns Redis' time in ms. ``members`` then reads the roster with
# plain commands (HGETALL, and the expired entries left to sweep): building a Lua table
# of 10,000 members costs Redis several times what sending them does.
SWEEP = (
    _COMMON
    + """
local now = now_ms()
sweep(now, tonumber(ARGV[1]))
return now
"""
)
