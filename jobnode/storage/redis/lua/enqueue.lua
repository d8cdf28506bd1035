-- enqueue.lua: add jobs that MongoDB already holds to the queue.
-- ARGV: prefix, then per job: id, type, priority, payload, max_retries, timeout_ms,
--       attempts, rev, due_ms (0 = now), errors, request_id ('' = none).
-- queued_ms (when the job became runnable: now, or its due time) lets take.lua report how
-- long the first attempt waited; rid is the submitting request's id, for worker logs.
-- Atomic so that a job's record, its sequence number and its place in the ready or
-- delayed set appear together. Idempotent: a job already in Redis is left alone, which
-- lets the API and the reconciler race on the same job without a double enqueue.
local now = now_ms()
local added = 0
for i = 2, #ARGV, 11 do
  local id = ARGV[i]
  local jkey = k('job', id)
  if redis.call('EXISTS', jkey) == 0 then
    local seq = redis.call('INCR', k('seq'))
    local priority, due, rev = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 8]), tonumber(ARGV[i + 7])
    redis.call('HSET', jkey, 'type', ARGV[i + 1], 'priority', priority, 'payload', ARGV[i + 3],
               'max_retries', ARGV[i + 4], 'timeout_ms', ARGV[i + 5], 'attempts', ARGV[i + 6],
               'rev', rev, 'errors', ARGV[i + 9], 'seq', seq, 'status', 'pending', 'updated_ms', now,
               'queued_ms', math.max(now, due), 'rid', ARGV[i + 10])
    -- A re-enqueue (the reconciler, rev > 0) tells MongoDB the job is pending again.
    if rev > 0 then transition(id, 'pending', now) end
    if due > now then
      redis.call('ZADD', k('delayed'), due, id)
    else
      ready_add(id, priority, seq)
    end
    added = added + 1
  end
end
if added > 0 then wake() end
return added
