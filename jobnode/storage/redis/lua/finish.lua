-- finish.lua: workers report the outcomes of jobs they ran, and start their next ones.
-- ARGV: prefix, n, then n reports of 7 values each: worker, id, outcome (completed | retry
--       | failed | returned: not run, put back unchanged), result, error, delay_ms, next_lease_ms (0: take no next job, the worker
--       is stopping).
-- Atomic so that an outcome is accepted only from the worker that holds the job while it
-- is running: a duplicate, late (lease lost) or cancelled completion changes nothing.
-- Taking the next job in the same call saves a busy worker one round trip per job, and a
-- node sends the reports of all its workers that finished meanwhile in one call (the
-- WorkerPool's GroupCommit, jobnode/pipeline/workers.py): for a short job the round trip,
-- not the script, is the cost.
-- Whether a failed attempt may run again is decided by retries_left (lib.lua), the rule
-- requeue uses too; the worker learns the outcome from the row.
-- Returns one row per report: {the job's new status (completed | retrying | failed | pending), or 0
-- when the report was refused, then the next job as take_next returns it, if one was taken}.

local now = now_ms()
local counts = {completed = 0, failed = 0, retried = 0}  -- written once, after the loop

local function finish(worker, id, outcome, result, error, delay_ms)
  local job = read_job(id, {'max_retries', 'lim', 'type', 'queue', 'sub'})
  if job.status ~= 'running' or job.worker ~= worker then return 0 end
  if outcome == 'returned' then  -- the worker cannot run this type: back to the queue, attempt refunded
    release_slot(worker)
    requeue(id, '', now, true)
    return 'pending'
  end
  redis.call('ZREM', k('leases'), id)
  redis.call('SREM', k('wjobs', worker), id)
  release_slot(worker)
  release_limits(id, job.lim)
  job.lim = nil
  if outcome == 'completed' then
    redis.call('HINCRBY', k('worker_stats'), worker .. ':processed', 1)
    counts.completed = counts.completed + 1
    transition_read(job, id, 'completed', now, 'result', result, 'error', '', 'finished_ms', now)
    publish_job_as('job.completed', id, {job.type, job.queue, job.sub}, 'attempt', job.attempts or 0,
                   'worker', worker, 'node', job.node or '', 'duration_ms', now - (tonumber(job.started_ms) or now))
    return 'completed'
  end
  redis.call('HINCRBY', k('worker_stats'), worker .. ':failed', 1)
  local errors = append_error(id, error, now)
  if outcome ~= 'failed' and retries_left(job.attempts, job.max_retries) then
    counts.retried = counts.retried + 1
    transition_read(job, id, 'retrying', now, 'error', error, 'errors', errors)
    redis.call('ZADD', k('delayed'), now + tonumber(delay_ms), id)
    publish_failure(id, job.attempts, error, now + tonumber(delay_ms))
    return 'retrying'
  end
  counts.failed = counts.failed + 1
  transition_read(job, id, 'failed', now, 'error', error, 'errors', errors, 'finished_ms', now)
  redis.call('ZADD', k('dead'), now, id)
  publish_failure(id, job.attempts, error, nil)
  return 'failed'
end

local rows = {}
for i = 0, tonumber(ARGV[2]) - 1 do
  local base = 3 + i * 7
  local worker = ARGV[base]
  local row = {finish(worker, ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4],
                      ARGV[base + 5])}
  local next_lease_ms = tonumber(ARGV[base + 6])
  if next_lease_ms > 0 then
    local taken = take_next(worker, next_lease_ms, nil, now)
    if taken then
      for _, value in ipairs(taken) do row[#row + 1] = value end
    end
  end
  rows[#rows + 1] = row
end
local accepted = 0
for _, name in ipairs({'completed', 'failed', 'retried'}) do
  if counts[name] > 0 then redis.call('INCRBY', k('count', name), counts[name]) end
  accepted = accepted + counts[name]
end
-- Slots were freed: the dispatcher is woken once for all of them, and only if a job waits
-- for one (ready_add lists every route with ready jobs in P:routes). With none waiting (jobs
-- that started locally, jobnode/pipeline/local_start.py) a wake would cost an empty dispatch
-- round per job; due retries are promoted on the dispatcher's idle tick anyway.
if accepted > 0 and redis.call('EXISTS', k('routes')) == 1 then wake() end
return rows
