-- rate_limit.lua: spend one token from a client's bucket, after refilling it for the time passed.
-- ARGV: prefix, client key, rate per minute, capacity (the burst).
-- Atomic so that reading the bucket, refilling it and spending a token are one step: requests
-- from one client reaching any number of nodes at once can never spend the same token twice.
-- The refill uses the Redis server's clock (TIME), so nodes whose clocks disagree still agree
-- on every bucket.
-- Returns {allowed (1 or 0), whole tokens left, ms until the bucket is full again,
--          ms until the next token when refused (0 when allowed)}.
local client, rate, capacity = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local key = k('rl', client)
local now = now_ms()
local per_ms = rate / 60000

local state = redis.call('HMGET', key, 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
if now > at then
  tokens = math.min(capacity, tokens + (now - at) * per_ms)
else
  now = at -- the clock stepped back (a failover to a replica): refill nothing, never refund twice
end

local allowed, wait_ms = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait_ms = math.ceil((1 - tokens) / per_ms)
end
local full_ms = math.ceil((capacity - tokens) / per_ms)

redis.call('HSET', key, 'tokens', string.format('%.6f', tokens), 'at', now)
-- A bucket left alone refills completely; dropping it then loses nothing and bounds memory.
redis.call('PEXPIRE', key, full_ms + 1000)
return {allowed, math.floor(tokens), full_ms, wait_ms}
