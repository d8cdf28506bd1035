-- register.lua: a node announces its workers (at start, or again after being reaped).
-- ARGV: prefix, node, capacity, worker...
-- Atomic so a worker never shows free capacity while it still owns jobs from a previous
-- incarnation: registering means "a fresh process", so whatever the old one held goes
-- back to the queue first (a started job has used an attempt).
local node, capacity = ARGV[2], tonumber(ARGV[3])
local now = now_ms()
for i = 4, #ARGV do
  local worker = ARGV[i]
  for _, id in ipairs(redis.call('SMEMBERS', k('wjobs', worker))) do
    requeue(id, 'worker restarted', now, false)
  end
  redis.call('DEL', k('wjobs', worker), k('inbox', worker))
  redis.call('HSET', k('workers'), worker, node)
  redis.call('HSET', k('capacity'), worker, capacity)
  redis.call('HSET', k('load'), worker, 0)
  redis.call('ZADD', k('seen'), now, worker)
  set_free(worker, capacity)
end
publish('node.joined', 'node', node, 'workers', #ARGV - 3)
wake()
return #ARGV - 3
