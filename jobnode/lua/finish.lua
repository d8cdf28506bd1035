-- finish.lua: a worker reports the outcome of a job it ran.
-- ARGV: prefix, worker, id, outcome (completed | retry | failed), result, error, delay_ms.
-- Atomic so that the outcome is accepted only from the worker that holds the job while it
-- is running: a duplicate, late (lease lost) or cancelled completion changes nothing.
-- Returns 1 if accepted, 0 if ignored.
local worker, id, outcome = ARGV[2], ARGV[3], ARGV[4]
local jkey = k('job', id)
local f = redis.call('HMGET', jkey, 'status', 'worker', 'attempts', 'max_retries')
if f[1] ~= 'running' or f[2] ~= worker then return 0 end
local now = now_ms()
redis.call('ZREM', k('leases'), id)
redis.call('SREM', k('wjobs', worker), id)
release_slot(worker)
if outcome == 'completed' then
  redis.call('HINCRBY', k('worker_stats'), worker .. ':processed', 1)
  redis.call('INCR', k('count', 'completed'))
  transition(id, 'completed', now, 'result', ARGV[5], 'error', '', 'finished_ms', now)
  return 1
end
redis.call('HINCRBY', k('worker_stats'), worker .. ':failed', 1)
local errors = append_error(id, ARGV[6], now)
if outcome == 'failed' or tonumber(f[3]) > tonumber(f[4]) then
  redis.call('INCR', k('count', 'failed'))
  transition(id, 'failed', now, 'error', ARGV[6], 'errors', errors, 'finished_ms', now)
  redis.call('ZADD', k('dead'), now, id)
else
  redis.call('INCR', k('count', 'retried'))
  transition(id, 'retrying', now, 'error', ARGV[6], 'errors', errors)
  redis.call('ZADD', k('delayed'), now + tonumber(ARGV[7]), id)
end
return 1
