-- leader_lease.lua: take, renew or give up the leader lease that fences dispatch.
-- ARGV: prefix, node, ttl_ms, mode (acquire | release), majority ("1" when `node` has
-- heard from a majority of its peers lately, else "0"; see jobnode/cluster/quorum.py), term (the
-- election term that made `node` leader, or "" when the algorithm has no such term), floor:
-- "" to number a new lease from P:fence alone; "ask" to return -1 instead of taking a new lease
-- (the caller then draws a floor from MongoDB and calls again); a number to take it with a
-- token at least that large (jobnode/storage/mongo/fence.py says why).
-- Atomic so that reading the holder and writing it are one step: two nodes can never both
-- take a free lease, and the fencing token only ever grows (INCR on every new holder).
-- The contender key lets a leader elected by a majority take the lease from a holder that
-- lost its majority (a leader cut off from its peers but not from Redis): the contender
-- announces itself here, and such a holder yields at its next renewal. A holder without a
-- majority and without a contender keeps leading: nobody better is asking.
-- A term is given only by an algorithm that elects at most one leader per term (raft):
-- then a leader of a newer term than the holder's takes the lease at once instead of
-- waiting out its TTL, since the holder's term is over (its node is dead or will step
-- down). That is what makes failover after a kill -9 as fast as the election. The old
-- holder's next fenced step fails, and its lower term can never take the lease back.
-- Returns the token held by `node` after the call, or 0 when it holds none.
local node, ttl_ms, mode, majority = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5] == '1'
local term = tonumber(ARGV[6] or '')
local floor_arg = ARGV[7] or ''
local current = redis.call('GET', k('leader'))
local holder, token
if current then holder, token = string.match(current, '^(.*) (%d+)$') end
if mode == 'release' then
  -- Handed over on purpose (a graceful stop or a step down): the node is alive, so the
  -- next holder has no reason to pause its workers (below).
  if holder == node then redis.call('DEL', k('leader'), k('leader:term'), k('leader:last')) end
  return 0
end

-- Hold the lease as `node`; the term key lives exactly as long as the lease.
local function hold(held_token)
  redis.call('SET', k('leader'), node .. ' ' .. held_token, 'PX', ttl_ms)
  if term then
    redis.call('SET', k('leader:term'), term, 'PX', ttl_ms)
  else
    redis.call('DEL', k('leader:term'))
  end
  return tonumber(held_token)
end

local contender = redis.call('GET', k('leader:contender'))
local outranked = (not majority) and contender and contender ~= node
if holder == node then
  if outranked then
    redis.call('DEL', k('leader'), k('leader:term'))
    return 0
  end
  return hold(token)
end
if current then
  local held_term = tonumber(redis.call('GET', k('leader:term')) or '')
  if not (majority and term and held_term and term > held_term) then
    if majority then redis.call('SET', k('leader:contender'), node, 'PX', ttl_ms) end
    return 0
  end
elseif outranked then
  return 0
end
if floor_arg == 'ask' then return -1 end
if contender == node then redis.call('DEL', k('leader:contender')) end
-- A new holder that takes over from another node without a handover (the lease expired, or
-- a newer term took it) names that node for its first dispatch, which pauses its workers:
-- that node is most likely dead, and until the reaper is sure (WORKER_TTL) the strategies
-- would keep handing it jobs that nobody starts (dispatch.lua, heartbeat.lua).
local previous = holder or redis.call('GET', k('leader:last'))
if previous and previous ~= node then redis.call('SET', k('leader:previous'), previous) end
redis.call('SET', k('leader:last'), node)
local next_token = redis.call('INCR', k('fence'))
local floor = tonumber(floor_arg)
if floor and floor > next_token then
  next_token = floor
  redis.call('SET', k('fence'), floor)
end
local held = hold(next_token)
publish('leader.changed', 'node', node, 'token', held, 'previous', holder or previous or '')
return held
