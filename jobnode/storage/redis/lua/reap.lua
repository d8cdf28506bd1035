-- reap.lua: the leader takes back jobs from dead workers and expired leases.
-- ARGV: prefix, node, token, worker_ttl_ms, max_jobs.
-- Atomic and fenced like dispatch: only the lease holder may move jobs between workers,
-- and a job is never both back in the queue and still owned by a worker.
-- Returns {dead workers, jobs put back}.
local err = check_fence(ARGV[2], ARGV[3])
if err then return err end
local now = now_ms()
local dead = redis.call('ZRANGEBYSCORE', k('seen'), '-inf', now - tonumber(ARGV[4]))
local moved = 0
local down = {}  -- node -> its workers found dead, announced once per node (node.down)
for _, worker in ipairs(dead) do
  local node = redis.call('HGET', k('workers'), worker)
  if node then down[node] = (down[node] or 0) + 1 end
  -- Unregister first so the requeued jobs do not hand capacity back to a dead worker.
  leave_group(worker)
  redis.call('HDEL', k('capacity'), worker)
  redis.call('HDEL', k('load'), worker)
  redis.call('HDEL', k('workers'), worker)
  redis.call('ZREM', k('seen'), worker)
  for _, id in ipairs(redis.call('SMEMBERS', k('wjobs', worker))) do
    moved = moved + requeue(id, 'worker ' .. worker .. ' stopped answering', now, false)
  end
  redis.call('DEL', k('wjobs', worker), k('inbox', worker))
end
for node, workers in pairs(down) do publish('node.down', 'node', node, 'workers', workers) end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', k('leases'), '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))) do
  local worker = redis.call('HGET', k('job', id), 'worker')
  local put_back = requeue(id, 'lease expired', now, false)
  if put_back == 1 and worker and worker ~= '' then release_slot(worker) end -- requeue woke
  moved = moved + put_back
end
return {dead, moved}
