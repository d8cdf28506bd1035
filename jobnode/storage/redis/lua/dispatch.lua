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

-- The first dispatch after a takeover pauses the workers of the node taken over from
-- (leader_lease.lua): out of the free index until their next heartbeat shows them alive
-- (heartbeat.lua puts them back), and the jobs waiting unstarted in their inboxes go back
-- to the queue at their old place. If that node is alive after all, nothing is lost: its
-- take of a job moved here finds it no longer assigned to it and skips it. Its running
-- jobs keep their leases, as with any silent worker, until the reaper decides.
local previous = redis.call('GET', k('leader:previous'))
if previous then
  redis.call('DEL', k('leader:previous'))
  local workers = redis.call('HGETALL', k('workers'))
  for i = 1, #workers, 2 do
    if workers[i + 1] == previous then pause_worker(workers[i], now) end
  end
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', k('delayed'), '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', k('delayed'), id)
  local f = redis.call('HMGET', k('job', id), 'status', 'priority', 'seq')
  if f[1] == 'retrying' then transition(id, 'pending', now) end
  if f[1] == 'retrying' or f[1] == 'pending' then ready_add(id, tonumber(f[2]), tonumber(f[3])) end
end

-- Per-call state, read once and written back at the end: the dispatch counter (for the
-- starvation guard), the round-robin cursor, and each worker's node and capacity.
local dispatches = tonumber(redis.call('GET', k('dispatch_count')) or 0)
local cursor = redis.call('GET', k('rr_cursor'))
local node_of, capacity_of = {}, {}
-- Workers with a free slot: counted once, then kept here (only assign_to fills slots in
-- this script, and a worker chosen from `free` always had one).
local free_workers = redis.call('ZCARD', k('free'))

-- Starvation guard: every share_every-th dispatch takes the oldest ready job whatever its
-- priority, so a flood of urgent jobs slows low-priority ones but never stops them.
local function next_job()
  dispatches = dispatches + 1
  local source, other = k('ready'), k('fifo')
  if share_every > 0 and dispatches % share_every == 0 then source, other = other, source end
  local popped = redis.call('ZPOPMIN', source)
  if not popped[1] then return nil end
  redis.call('ZREM', other, popped[1])
  return popped[1]
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
  local w
  if cursor then w = redis.call('ZRANGEBYLEX', k('free_rr'), '(' .. cursor, '+', 'LIMIT', 0, 1)[1] end
  if not w then w = redis.call('ZRANGEBYLEX', k('free_rr'), '-', '+', 'LIMIT', 0, 1)[1] end
  cursor = w
  return w
end

-- Count one more job against the worker's capacity; returns the worker's node.
local function assign_to(worker)
  if not node_of[worker] then
    node_of[worker] = redis.call('HGET', k('workers'), worker)
    capacity_of[worker] = tonumber(redis.call('HGET', k('capacity'), worker) or 0)
  end
  local load = redis.call('HINCRBY', k('load'), worker, 1)
  set_free(worker, capacity_of[worker] - load)
  if capacity_of[worker] - load <= 0 then free_workers = free_workers - 1 end
  return node_of[worker]
end

local assigned = 0
local start_count, start_cursor = dispatches, cursor
while assigned < max_jobs and free_workers > 0 do
  local id = next_job()
  if not id then break end
  local jkey = k('job', id)
  local f = redis.call('HMGET', jkey, 'status', 'priority', 'rev')
  if f[1] == 'pending' then
    local worker = choose_worker(tonumber(f[2]))
    local worker_node = assign_to(worker)
    redis.call('HSET', jkey, 'status', 'assigned', 'worker', worker, 'node', worker_node,
               'updated_ms', now, 'rev', (tonumber(f[3]) or 0) + 1)
    redis.call('ZADD', k('leases'), now + lease_ms, id)
    redis.call('SADD', k('wjobs', worker), id)
    redis.call('RPUSH', k('inbox', worker), id)
    assigned = assigned + 1
  end
end
if dispatches ~= start_count then redis.call('SET', k('dispatch_count'), dispatches) end
if cursor and cursor ~= start_cursor then redis.call('SET', k('rr_cursor'), cursor) end
return {assigned, redis.call('ZCARD', k('ready')), free_workers}
