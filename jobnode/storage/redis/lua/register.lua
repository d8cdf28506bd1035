-- register.lua: a node announces a group of its workers (at start, or again after being reaped).
-- ARGV: prefix, node, capacity, group, group definition (JSON {q: queues, t: types}; no t:
--       any type), worker...
-- Atomic so a worker never shows free capacity while it still owns jobs from a previous
-- incarnation: registering means "a fresh process", so whatever the old one held goes
-- back to the queue first (a started job has used an attempt). A worker that was in
-- another group (the node restarted with other queues or types) leaves that one.
local node, capacity, group, definition = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local now = now_ms()
for i = 6, #ARGV do
  local worker = ARGV[i]
  for _, id in ipairs(redis.call('SMEMBERS', k('wjobs', worker))) do
    requeue(id, 'worker restarted', now, false)
  end
  redis.call('DEL', k('wjobs', worker), k('inbox', worker))
  leave_group(worker)
  redis.call('HSET', k('wgroup'), worker, group)
  redis.call('HINCRBY', k('group_size'), group, 1)
  redis.call('HSET', k('workers'), worker, node)
  redis.call('HSET', k('capacity'), worker, capacity)
  redis.call('HSET', k('load'), worker, 0)
  redis.call('ZADD', k('seen'), now, worker)
  set_free(worker, capacity, group)
end
redis.call('HSET', k('groups'), group, definition)
publish('node.joined', 'node', node, 'workers', #ARGV - 5)
wake()
return #ARGV - 5
