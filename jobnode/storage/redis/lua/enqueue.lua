-- enqueue.lua: add jobs that MongoDB already holds to the queue, and start at once those an
-- idle worker of the calling node can take (local start).
-- ARGV: prefix, lease_ms, m, then m idle workers of the calling node (0 for none: no local
--       start), then per job: id, due_ms (0 = now), n, then n items: the job's hash fields
--       as name, value pairs (the ENQUEUED group of jobnode/core/record.py, and `doc` for a
--       job acknowledged before MongoDB holds it: durability `queue`).
-- Returns {jobs added, then per job started: {worker, then the job as take_next returns it}}.
-- queued_ms (when the job became runnable: now, or its due time) lets take.lua report how
-- long the first attempt waited.
-- Atomic so that a job's record, its sequence number and its place in the ready or
-- delayed set appear together. Idempotent: a job already in Redis is left alone, which
-- lets the API and the reconciler race on the same job without a double enqueue.
--
-- Local start: a job due now goes straight to one of the given workers, assigned and started
-- as dispatch.lua then take.lua would have done it, when all of this holds:
--   the worker holds nothing (load 0) and is in its group's free index (not paused), and its
--     group runs the job's queue and type;
--   nothing waits that the worker's group could run (every such route's ready set is empty),
--     so no job is overtaken, whatever its priority;
--   a leader holds the lease and has finished taking over (no P:leader:previous), and no flow
--     limit is set (dispatch.lua applies those).
-- The caller hands the started job to its worker in memory: no dispatch, no inbox, no take,
-- which is two Redis round trips and two wake-ups fewer between submit and start.
local now = now_ms()
local lease_ms, idle_count = tonumber(ARGV[2]), tonumber(ARGV[3])

local idle = {}  -- the workers not yet given a job by this call
for w = 1, idle_count do idle[w] = ARGV[3 + w] end
local local_start = idle_count > 0 and redis.call('EXISTS', k('leader')) == 1
  and redis.call('EXISTS', k('leader:previous')) == 0 and redis.call('EXISTS', k('limits')) == 0

-- Per group (read once per call): its definition, and whether a route it runs has ready jobs.
local group_defs, group_waits = {}, {}
local function runs(group, route)
  local def = group_defs[group]
  if def == nil then
    local text = redis.call('HGET', k('groups'), group)
    def = text and cjson.decode(text) or false
    group_defs[group] = def
  end
  if not def then return false end
  local sep = string.find(route, ':', 1, true)
  local queue, job_type = string.sub(route, 1, sep - 1), string.sub(route, sep + 1)
  local serves = false
  for _, q in ipairs(def.q) do if q == queue then serves = true end end
  if not serves then return false end
  if def.t == nil then return true end
  for _, t in ipairs(def.t) do if t == job_type then return true end end
  return false
end
local function waits_for(group)
  if group_waits[group] == nil then
    group_waits[group] = false
    for _, route in ipairs(redis.call('SMEMBERS', k('routes'))) do
      if runs(group, route) and redis.call('ZCARD', k('ready', route)) > 0 then
        group_waits[group] = true
        break
      end
    end
  end
  return group_waits[group]
end

-- An idle worker that may start a job of this route now; taken off the idle list.
local function idle_worker_for(route)
  for w, worker in ipairs(idle) do
    local group = redis.call('HGET', k('wgroup'), worker)
    if group and runs(group, route) and not waits_for(group)
        and tonumber(redis.call('HGET', k('load'), worker) or 1) == 0
        and redis.call('ZSCORE', k('free', group), worker) then
      table.remove(idle, w)
      return worker, group
    end
  end
end

local function start_here(id, route)
  local worker, group = idle_worker_for(route)
  if not worker then return nil end
  local capacity = tonumber(redis.call('HGET', k('capacity'), worker) or 0)
  local load = redis.call('HINCRBY', k('load'), worker, 1)
  set_free(worker, capacity - load, group)
  mark_assigned(id, redis.call('HGET', k('job', id), 'rev'), worker,
                redis.call('HGET', k('workers'), worker), now, lease_ms)
  local row = take_next(worker, lease_ms, id, now)
  table.insert(row, 1, worker)
  return row
end

local added, queued, started = 0, 0, {}
local i = 4 + idle_count
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
      queued = queued + 1
    else
      local route = route_of(f.queue, f.type)
      local row = local_start and #idle > 0 and start_here(id, route)
      if row then
        started[#started + 1] = row
      else
        ready_add(id, tonumber(f.priority), seq, route)
        queued = queued + 1
        -- A later job of this call must not start ahead of this one.
        local_start = false
      end
    end
    added = added + 1
  end
end
if queued > 0 then wake() end
return {added, unpack(started)}
