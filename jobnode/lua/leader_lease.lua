-- leader_lease.lua: take, renew or give up the leader lease that fences dispatch.
-- ARGV: prefix, node, ttl_ms, mode (acquire | release).
-- Atomic so that reading the holder and writing it are one step: two nodes can never both
-- take a free lease, and the fencing token only ever grows (INCR on every new holder).
-- Returns the token held by `node` after the call, or 0 when another node holds it.
local node, ttl_ms, mode = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local current = redis.call('GET', k('leader'))
local holder, token
if current then holder, token = string.match(current, '^(.*) (%d+)$') end
if mode == 'release' then
  if holder == node then redis.call('DEL', k('leader')) end
  return 0
end
if not current then
  token = redis.call('INCR', k('fence'))
  redis.call('SET', k('leader'), node .. ' ' .. token, 'PX', ttl_ms)
  return token
end
if holder == node then
  redis.call('PEXPIRE', k('leader'), ttl_ms)
  return tonumber(token)
end
return 0
