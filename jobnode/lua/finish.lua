-- finish.lua: a worker reports the outcome of a job it ran, and starts its next one.
-- ARGV: prefix, worker, id, outcome (completed | retry | failed), result, error, delay_ms,
--       next_lease_ms (0: do not take a next job, the worker is stopping).
-- Atomic so that the outcome is accepted only from the worker that holds the job while it
-- is running: a duplicate, late (lease lost) or cancelled completion changes nothing.
-- Taking the next job in the same call saves a busy worker one round trip per job.
-- Returns {accepted (1 or 0), then the next job's fields as take_next returns them, if any}.
local worker, id, outcome = ARGV[2], ARGV[3], ARGV[4]

local function finish()
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
end

local reply = {finish()}
local next_lease_ms = tonumber(ARGV[8] or 0)
if next_lease_ms > 0 then
  local row = take_next(worker, next_lease_ms, nil)
  if row then
    for _, value in ipairs(row) do reply[#reply + 1] = value end
  end
end
return reply
