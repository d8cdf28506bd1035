-- handback.lua: a node shutting down gives back the jobs its workers still hold.
-- ARGV: prefix, worker...
-- Atomic per call so each job is either still the worker's or back in the queue. Jobs cut
-- off mid-run are refunded their attempt: the node stopped, the job did not fail.
local now = now_ms()
local returned = 0
local node = ARGV[2] and redis.call('HGET', k('workers'), ARGV[2])
for i = 2, #ARGV do
  local worker = ARGV[i]
  for _, id in ipairs(redis.call('SMEMBERS', k('wjobs', worker))) do
    returned = returned + requeue(id, 'node shut down', now, true)
  end
  redis.call('DEL', k('wjobs', worker), k('inbox', worker))
  leave_group(worker)
  redis.call('HDEL', k('capacity'), worker)
  redis.call('HDEL', k('load'), worker)
  redis.call('HDEL', k('workers'), worker)
  redis.call('ZREM', k('seen'), worker)
end
if node then publish('node.left', 'node', node, 'workers', #ARGV - 1) end
return returned
