-- dispatch.lua: the leader's dispatch step: promote due delayed jobs, then assign ready
-- jobs to workers with free capacity, chosen by the load-balancing strategy.
-- ARGV: prefix, node, token, max_jobs, strategy, lease_ms, share_every, seed.
-- Atomic and fenced: it runs only while ARGV's node and token hold the leader lease, so
-- a stale leader (paused, partitioned, or behind on the election) can never assign a job,
-- and no job is ever popped without landing in exactly one worker's inbox.
local node, token = ARGV[2], ARGV[3]
local err = check_fence(node, token)
if err then return err end
local max_jobs, strategy, lease_ms = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local share_every, rng = tonumber(ARGV[7]), tonumber(ARGV[8])
local now = now_ms()

for _, id in ipairs(redis.call('ZRANGEBYSCORE', k('delayed'), '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', k('delayed'), id)
  local f = redis.call('HMGET', k('job', id), 'status', 'priority', 'seq')
  if f[1] == 'retrying' then transition(id, 'pending', now) end
  if f[1] == 'retrying' or f[1] == 'pending' then ready_add(id, tonumber(f[2]), tonumber(f[3])) end
end

-- Starvation guard: every share_every-th dispatch takes the oldest ready job whatever its
-- priority, so a flood of urgent jobs slows low-priority ones but never stops them.
local function next_job()
  local n = redis.call('INCR', k('dispatch_count'))
  local source = k('ready')
  if share_every > 0 and n % share_every == 0 then source = k('fifo') end
  local id = redis.call('ZRANGE', source, 0, 0)[1]
  if id then ready_remove(id) end
  return id
end

local function random_index(n)
  rng = (rng * 16807) % 2147483647 -- Park-Miller: exact in doubles, seeded by the caller
  return rng % n
end

-- Each choice is O(log n) in the number of workers with free capacity.
local function choose_worker(priority)
  local mode = strategy
  if mode == 'priority' then
    if priority >= 8 then mode = 'least_loaded' else mode = 'round_robin' end
  end
  if mode == 'least_loaded' then
    return redis.call('ZREVRANGE', k('free'), 0, 0)[1]
  elseif mode == 'random' then
    local i = random_index(redis.call('ZCARD', k('free_rr')))
    return redis.call('ZRANGE', k('free_rr'), i, i)[1]
  end
  local last = redis.call('GET', k('rr_cursor'))
  local w
  if last then w = redis.call('ZRANGEBYLEX', k('free_rr'), '(' .. last, '+', 'LIMIT', 0, 1)[1] end
  if not w then w = redis.call('ZRANGEBYLEX', k('free_rr'), '-', '+', 'LIMIT', 0, 1)[1] end
  redis.call('SET', k('rr_cursor'), w)
  return w
end

local assigned = 0
while assigned < max_jobs and redis.call('ZCARD', k('free')) > 0 do
  local id = next_job()
  if not id then break end
  local f = redis.call('HMGET', k('job', id), 'status', 'priority')
  if f[1] == 'pending' then
    local worker = choose_worker(tonumber(f[2]))
    local worker_node = redis.call('HGET', k('workers'), worker)
    redis.call('HSET', k('job', id), 'status', 'assigned', 'worker', worker, 'node', worker_node,
               'updated_ms', now)
    redis.call('HINCRBY', k('job', id), 'rev', 1)
    redis.call('ZADD', k('leases'), now + lease_ms, id)
    redis.call('SADD', k('wjobs', worker), id)
    redis.call('RPUSH', k('inbox', worker), id)
    take_slot(worker)
    assigned = assigned + 1
  end
end
return {assigned, redis.call('ZCARD', k('ready')), redis.call('ZCARD', k('free'))}
