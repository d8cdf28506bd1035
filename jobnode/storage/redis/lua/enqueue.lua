-- enqueue.lua: add jobs that MongoDB already holds to the queue.
-- ARGV: prefix, then per job: id, due_ms (0 = now), n, then n items: the job's hash fields
--       as name, value pairs (the ENQUEUED group of jobnode/core/record.py, and `doc` for a
--       job acknowledged before MongoDB holds it: durability `queue`).
-- queued_ms (when the job became runnable: now, or its due time) lets take.lua report how
-- long the first attempt waited.
-- Atomic so that a job's record, its sequence number and its place in the ready or
-- delayed set appear together. Idempotent: a job already in Redis is left alone, which
-- lets the API and the reconciler race on the same job without a double enqueue.
local now = now_ms()
local added = 0
local i = 2
while i <= #ARGV do
  local id, due, first, last = ARGV[i], tonumber(ARGV[i + 1]), i + 3, i + 2 + tonumber(ARGV[i + 2])
  i = last + 1
  local jkey = k('job', id)
  if redis.call('EXISTS', jkey) == 0 then
    local seq = redis.call('INCR', k('seq'))
    redis.call('HSET', jkey, 'seq', seq, 'status', 'pending', 'updated_ms', now,
               'queued_ms', math.max(now, due), unpack(ARGV, first, last))
    local f = {}  -- the fields this script needs, in one pass over the job's items
    for j = first, last - 1, 2 do
      local name = ARGV[j]
      if name == 'rev' or name == 'priority' or name == 'queue' or name == 'type' or name == 'sub'
          or name == 'doc' then
        f[name] = ARGV[j + 1]
      end
    end
    -- A re-enqueue (the reconciler, rev > 0) tells MongoDB the job is pending again; a job
    -- queued for the first time is announced (job.submitted).
    if tonumber(f.rev or 0) > 0 then
      transition(id, 'pending', now)
    else
      publish_job_as('job.submitted', id, {f.type, f.queue, f.sub}, 'priority', f.priority or '',
                     'due_ms', math.max(now, due))
      -- A `queue` job's first outbox entry carries its whole record: the outbox writer inserts
      -- it, so MongoDB gets the job in the same atomic step as Redis (and its AOF) got it.
      if f.doc then
        -- `type` as every outbox entry has it (a snapshot without it would clear the record's).
        redis.call('XADD', k('outbox'), '*', 'id', id, 'rev', 0, 'status', 'pending', 'updated_ms', now,
                   'type', f.type, 'doc', f.doc)
      end
    end
    if due > now then
      redis.call('ZADD', k('delayed'), due, id)
    else
      ready_add(id, tonumber(f.priority), seq, route_of(f.queue, f.type))
    end
    added = added + 1
  end
end
if added > 0 then wake() end
return added
