-- retry.lua: re-run a failed or cancelled job (the admin's dead-letter retry).
-- ARGV: prefix, id, then the job's hash fields as MongoDB holds them, as name, value pairs
--       (the RESTORED group of jobnode/core/record.py).
-- Atomic so the job leaves the dead-letter set and enters the ready set together, with a
-- fresh attempt budget. Works whether Redis still holds the job or already forgot it.
-- Returns the status before, or 'busy' when the job is not finished.
local id = ARGV[2]
local jkey = k('job', id)
local now = now_ms()
local status = redis.call('HGET', jkey, 'status')
if status and status ~= 'failed' and status ~= 'cancelled' and status ~= 'completed' then
  return 'busy'
end
if not status then
  redis.call('HSET', jkey, unpack(ARGV, 3))
  status = 'forgotten'
end
redis.call('ZREM', k('dead'), id)
local seq = redis.call('INCR', k('seq'))
-- queued_ms restarts: the wait of the new first attempt counts from this retry.
redis.call('HSET', jkey, 'seq', seq, 'attempts', 0, 'worker', '', 'node', '', 'result', '',
           'error', '', 'started_ms', '', 'finished_ms', '', 'queued_ms', now)
redis.call('HDEL', jkey, 'progress')
transition(id, 'pending', now)
publish_job('job.retrying', id, 'attempt', 0, 'retry_at_ms', now, 'by', 'admin')
local f = redis.call('HMGET', jkey, 'priority', 'queue', 'type')
ready_add(id, tonumber(f[1]), seq, route_of(f[2], f[3]))
wake()
return status
