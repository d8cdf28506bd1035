-- heartbeat.lua: a node proves its workers are alive and renews their job leases.
-- ARGV: prefix, lease_ms, then per worker: worker, running job id ('' when idle).
-- Atomic so that a lease is renewed only for a job that is still assigned to that worker:
-- a job that was cancelled, reclaimed or reassigned is reported back as lost instead.
-- A lease is renewed only for work the worker really has in hand: the job it reports
-- running, and assigned jobs still waiting in its inbox. A job Redis shows as running on
-- this worker that the worker does not report (the reply to its take was lost when the
-- connection broke), or an assigned job no longer in the inbox (a blocking pop whose
-- reply was lost), is left to expire: the leader's reaper then puts it back. Renewing
-- those would keep them "in flight" forever with nobody running them.
-- A running job is recorded for MongoDB at its first heartbeat (take_next leaves it out,
-- as most jobs end before one): `shown` marks the attempt as recorded.
-- It also re-indexes a live worker's free slots, which puts back a paused one.
-- Returns {lost job ids, unregistered workers}; the node cancels the first and
-- re-registers the second.
local lease_ms = tonumber(ARGV[2])
local now = now_ms()
local lost, missing = {}, {}
for i = 3, #ARGV, 2 do
  local worker, running = ARGV[i], ARGV[i + 1]
  if redis.call('HEXISTS', k('capacity'), worker) == 0 then
    missing[#missing + 1] = worker
  else
    redis.call('ZADD', k('seen'), now, worker)
    -- Seen alive: a worker paused after a takeover (dispatch.lua) is offered jobs again.
    local group = redis.call('HGET', k('wgroup'), worker)
    if group and not redis.call('ZSCORE', k('free', group), worker) then
      local cap = tonumber(redis.call('HGET', k('capacity'), worker))
      set_free(worker, cap - tonumber(redis.call('HGET', k('load'), worker) or 0), group)
    end
    for _, id in ipairs(redis.call('SMEMBERS', k('wjobs', worker))) do
      local f = redis.call('HMGET', k('job', id), 'status', 'worker')
      if f[2] ~= worker or (f[1] ~= 'running' and f[1] ~= 'assigned') then
        redis.call('SREM', k('wjobs', worker), id)
      elseif (f[1] == 'running' and id == running)
          or (f[1] == 'assigned' and redis.call('LPOS', k('inbox', worker), id)) then
        redis.call('ZADD', k('leases'), 'XX', now + lease_ms, id)
      end
    end
  end
  if running ~= '' then
    local f = redis.call('HMGET', k('job', running), 'status', 'worker', 'shown')
    if f[1] ~= 'running' or f[2] ~= worker then
      lost[#lost + 1] = running
    elseif f[3] ~= '1' then
      redis.call('HSET', k('job', running), 'shown', 1)
      record(running)
    end
  end
end
return {lost, missing}
