-- cancel.lua: cancel a job that has not finished.
-- ARGV: prefix, id.
-- Atomic so the job leaves every queue, lease and worker slot in the same step that
-- marks it cancelled; a worker still running it finds out at its next heartbeat and
-- its late completion is ignored by finish.lua.
-- Returns nil when Redis does not hold the job, else {status before, 1 if cancelled}.
local id = ARGV[2]
local f = redis.call('HMGET', k('job', id), 'status', 'worker', 'queue', 'type', 'lim')
if not f[1] then return nil end
if f[1] == 'completed' or f[1] == 'failed' or f[1] == 'cancelled' then return {f[1], 0} end
local now = now_ms()
ready_remove(id, route_of(f[3], f[4]))
redis.call('ZREM', k('delayed'), id)
redis.call('ZREM', k('leases'), id)
if (f[1] == 'assigned' or f[1] == 'running') and f[2] then
  redis.call('SREM', k('wjobs', f[2]), id)
  release_slot(f[2])
  release_limits(id, f[5])
  wake()
end
transition(id, 'cancelled', now, 'finished_ms', now)
redis.call('INCR', k('count', 'cancelled'))  -- the stats' total, kept as it changes (never counted)
publish_job('job.cancelled', id, 'previous', f[1])
return {f[1], 1}
