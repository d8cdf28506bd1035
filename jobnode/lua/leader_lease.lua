-- leader_lease.lua: take, renew or give up the leader lease that fences dispatch.
-- ARGV: prefix, node, ttl_ms, mode (acquire | release), majority ("1" when `node` has
-- heard from a majority of its peers lately, else "0"; see jobnode/quorum.py).
-- Atomic so that reading the holder and writing it are one step: two nodes can never both
-- take a free lease, and the fencing token only ever grows (INCR on every new holder).
-- The contender key lets a leader elected by a majority take the lease from a holder that
-- lost its majority (a leader cut off from its peers but not from Redis): the contender
-- announces itself here, and such a holder yields at its next renewal. A holder without a
-- majority and without a contender keeps leading: nobody better is asking.
-- Returns the token held by `node` after the call, or 0 when it holds none.
local node, ttl_ms, mode, majority = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5] == '1'
local current = redis.call('GET', k('leader'))
local holder, token
if current then holder, token = string.match(current, '^(.*) (%d+)$') end
if mode == 'release' then
  if holder == node then redis.call('DEL', k('leader')) end
  return 0
end
local contender = redis.call('GET', k('leader:contender'))
local outranked = (not majority) and contender and contender ~= node
if holder == node then
  if outranked then
    redis.call('DEL', k('leader'))
    return 0
  end
  redis.call('PEXPIRE', k('leader'), ttl_ms)
  return tonumber(token)
end
if current then
  if majority then redis.call('SET', k('leader:contender'), node, 'PX', ttl_ms) end
  return 0
end
if outranked then return 0 end
if contender == node then redis.call('DEL', k('leader:contender')) end
token = redis.call('INCR', k('fence'))
redis.call('SET', k('leader'), node .. ' ' .. token, 'PX', ttl_ms)
return token
