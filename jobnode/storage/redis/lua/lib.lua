-- lib.lua: helpers prepended to every jobnode script (see jobnode/storage/redis/scripts.py,
-- which also puts before it the generated field lists SNAPSHOT and TAKE_FIELDS, and
-- EVENTS_MAX_ENTRIES, the length the event stream is capped at).
--
-- Every script takes the key prefix as ARGV[1] and derives its key names from it, so one
-- Redis can host several clusters. Keys are derived inside the scripts, which means jobnode
-- needs a single Redis server (or a primary with replicas), not Redis Cluster.
-- Times come from the Redis server clock (TIME): no script compares two machines' clocks.

local P = ARGV[1]
-- A key name from one or two parts. Plain concatenation: a table join would allocate a
-- table per key, and a job's trip through the scripts derives some forty key names.
local function k(a, b)
  if b then return P .. ':' .. a .. ':' .. b end
  return P .. ':' .. a
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A ready job waits in the ready set of its route, its queue and type: P:ready:{queue}:{type}
-- (P:fifo:{queue}:{type} holds the same jobs by sequence alone). P:routes lists the routes
-- that may hold ready jobs, so the dispatcher looks only at those. A queue name has no ':',
-- so the first ':' of a route separates the two. Jobs queued before queues existed have no
-- queue field: they belong to the default queue.
local function route_of(queue, job_type)
  if not queue or queue == '' then queue = 'default' end
  return queue .. ':' .. (job_type or '')
end

-- Ready order: priority band first (10 = most urgent), then submission sequence (FIFO).
-- 2^44 sequence numbers per band keep every score an exact integer in a double.
local PRIORITY_STRIDE = 17592186044416
local function ready_add(id, priority, seq, route)
  redis.call('ZADD', k('ready', route), (10 - priority) * PRIORITY_STRIDE + seq, id)
  redis.call('ZADD', k('fifo', route), seq, id)
  redis.call('SADD', k('routes'), route)
end
local function ready_remove(id, route)
  redis.call('ZREM', k('ready', route), id)
  redis.call('ZREM', k('fifo', route), id)
end

-- Nudge the leader's dispatcher: one token at most, so a burst costs nothing.
local function wake()
  if redis.call('LLEN', k('wake')) == 0 then redis.call('RPUSH', k('wake'), 1) end
end

-- Workers come in groups: the workers of one group serve the same queues and run the same
-- job types (a group's id is derived from both, so nodes configured alike share a group).
-- P:groups maps a group to its definition (JSON {q: queues, t: types}), P:group_size to
-- its registered workers, P:wgroup each worker to its group.
-- Free capacity index of a group, used by the strategies: `free:{group}` scores its workers
-- by free slots, `free_rr:{group}` holds the same workers at score 0 so they sort by name
-- for round robin. `group` may be given when the caller knows it (one HGET less).
local function set_free(worker, free, group)
  group = group or redis.call('HGET', k('wgroup'), worker)
  if not group then return end
  if free > 0 then
    redis.call('ZADD', k('free', group), free, worker)
    redis.call('ZADD', k('free_rr', group), 0, worker)
  else
    redis.call('ZREM', k('free', group), worker)
    redis.call('ZREM', k('free_rr', group), worker)
  end
end
-- Give back a worker's slot. The caller rings wake() (once per call, however many slots
-- it gave back).
local function release_slot(worker)
  local cap = redis.call('HGET', k('capacity'), worker)
  if not cap then return end -- unregistered (reaped) worker: nothing to give back
  local load = redis.call('HINCRBY', k('load'), worker, -1)
  if load < 0 then redis.call('HSET', k('load'), worker, 0); load = 0 end
  set_free(worker, tonumber(cap) - load)
end

-- Give a job to a worker: the caller has counted it against the worker's capacity. The job
-- is `assigned` under its job lease and among the worker's jobs; the caller then pushes it
-- onto the worker's inbox (dispatch.lua) or starts it at once (enqueue.lua's local start).
local function mark_assigned(id, rev, worker, node, now, lease_ms)
  redis.call('HSET', k('job', id), 'status', 'assigned', 'worker', worker, 'node', node,
             'updated_ms', now, 'rev', (tonumber(rev) or 0) + 1)
  redis.call('ZADD', k('leases'), now + lease_ms, id)
  redis.call('SADD', k('wjobs', worker), id)
end

-- Take a worker out of its group (reaped, handed back, or re-registering in another group);
-- the group's definition goes when its last worker does.
local function leave_group(worker)
  local group = redis.call('HGET', k('wgroup'), worker)
  if not group then return end
  set_free(worker, 0, group)
  redis.call('HDEL', k('wgroup'), worker)
  if redis.call('HINCRBY', k('group_size'), group, -1) <= 0 then
    redis.call('HDEL', k('group_size'), group)
    redis.call('HDEL', k('groups'), group)
  end
end

-- Events: each job state change, and each node and leader change, is also published on the
-- capped stream P:events in the same atomic step, so a subscriber can never see a change
-- that did not happen nor miss one that did (within the stream's retention). Entries are
-- flat name/value pairs; jobnode/storage/redis/event_stream.py turns them into events.
-- MAXLEN ~ trims whole stream nodes at once, which keeps the cap cheap on every append.
local function publish(name, ...)
  redis.call('XADD', k('events'), 'MAXLEN', '~', EVENTS_MAX_ENTRIES, '*', 'event', name, ...)
end

-- A job event, labelled with what subscribers filter on: the job's type, queue and submitter.
-- publish_job_as takes them from a caller that has read them already ({type, queue, sub}).
local function publish_job_as(name, id, labels, ...)
  publish(name, 'job', id, 'type', labels[1] or '', 'queue', labels[2] or '', 'sub', labels[3] or '', ...)
end
local function publish_job(name, id, ...)
  publish_job_as(name, id, redis.call('HMGET', k('job', id), 'type', 'queue', 'sub'), ...)
end

-- A failed attempt: job.failed, then job.retrying (with when) or job.dead (final).
local function publish_failure(id, attempt, error, retry_at_ms)
  publish_job('job.failed', id, 'attempt', attempt or 0, 'error', error or '')
  if retry_at_ms then
    publish_job('job.retrying', id, 'attempt', attempt or 0, 'retry_at_ms', retry_at_ms)
  else
    publish_job('job.dead', id, 'attempt', attempt or 0, 'error', error or '')
  end
end

-- The outbox is the only way job state reaches MongoDB: every state change appends the
-- job's mutable fields, SNAPSHOT (with its new rev), in the same atomic step, so a crash
-- can never separate "changed in Redis" from "will be recorded in MongoDB".

-- A job's snapshot fields, and any `extra` ones, in one HMGET, keyed by name (absent: nil).
local function read_job(id, extra)
  local names = {unpack(SNAPSHOT)}
  for _, name in ipairs(extra or {}) do names[#names + 1] = name end
  local values = redis.call('HMGET', k('job', id), unpack(names))
  local job = {}
  for i, name in ipairs(names) do job[name] = values[i] or nil end
  return job
end

local function emit(id, job)
  local args = {k('outbox'), '*', 'id', id}
  for _, name in ipairs(SNAPSHOT) do
    if job[name] then
      args[#args + 1] = name
      args[#args + 1] = job[name]
    end
  end
  redis.call('XADD', unpack(args))
end

local function record(id)
  emit(id, read_job(id))
end

-- Move a job to a new status: bump rev, stamp the time, record it for MongoDB.
local function transition(id, status, now, ...)
  local jkey = k('job', id)
  redis.call('HSET', jkey, 'status', status, 'updated_ms', now, ...)
  redis.call('HINCRBY', jkey, 'rev', 1)
  record(id)
end

-- The same for a job the script has just read with read_job (and not changed since): its
-- rev and snapshot are known, so the rev goes in the HSET and the outbox entry is built
-- without reading the job again (two Redis calls fewer on the completion path).
local function transition_read(job, id, status, now, ...)
  local rev = (tonumber(job.rev) or 0) + 1
  redis.call('HSET', k('job', id), 'status', status, 'updated_ms', now, 'rev', rev, ...)
  job.status, job.updated_ms, job.rev = status, now, rev
  local fields = {...}
  for i = 1, #fields, 2 do job[fields[i]] = fields[i + 1] end
  emit(id, job)
end

-- The one rule for "retries used up": a job may run max_retries times more after its
-- first attempt, so the failure of attempt number max_retries + 1 is final.
local function retries_left(attempts, max_retries)
  return (tonumber(attempts) or 0) <= (tonumber(max_retries) or 0)
end

local function append_error(id, message, now)
  local jkey = k('job', id)
  local f = redis.call('HMGET', jkey, 'errors', 'attempts', 'worker', 'node')
  local errors = cjson.decode(f[1] or '[]')
  errors[#errors + 1] = {attempt = tonumber(f[2] or 0), error = message, worker_id = f[3],
                         node_id = f[4], at_ms = now}
  return cjson.encode(errors)
end

-- Flow limits (dispatch.lua applies them): a job assigned under a concurrency limit holds a
-- place in each limit's running set, P:lrun:{scope}:{name}, named in its `lim` field. Every
-- way a job stops running (finished, failed, retried, cancelled, requeued by the reaper, a
-- handback or a paused worker) passes here, so a place is never kept by a job that is not
-- running. Sets, not counters: giving a place back twice changes nothing.
local function release_limits(id, lim)
  if not lim or lim == '' then return end
  for key in string.gmatch(lim, '%S+') do redis.call('SREM', k('lrun', key), id) end
  redis.call('HDEL', k('job', id), 'lim')
  wake()  -- a place is free: jobs waiting on the limit may go
end

-- A job its worker can no longer finish (worker dead, lease expired, node shut down):
-- an unstarted job simply goes back; a started one has used an attempt (unless refund).
local function requeue(id, reason, now, refund)
  local f = redis.call('HMGET', k('job', id), 'status', 'worker', 'attempts', 'max_retries',
                       'priority', 'seq', 'queue', 'type', 'lim')
  local route = route_of(f[7], f[8])
  redis.call('ZREM', k('leases'), id)
  if f[1] == 'assigned' or f[1] == 'running' then release_limits(id, f[9]) end
  if f[2] then redis.call('SREM', k('wjobs', f[2]), id) end
  if f[1] == 'assigned' then
    transition(id, 'pending', now, 'worker', '', 'node', '')
    ready_add(id, tonumber(f[5]), tonumber(f[6]), route)
  elseif f[1] == 'running' then
    if refund then
      redis.call('HINCRBY', k('job', id), 'attempts', -1)
      transition(id, 'pending', now)
      ready_add(id, tonumber(f[5]), tonumber(f[6]), route)
    else
      local errors = append_error(id, reason, now)
      if retries_left(f[3], f[4]) then
        transition(id, 'pending', now, 'error', reason, 'errors', errors)
        ready_add(id, tonumber(f[5]), tonumber(f[6]), route)
        publish_failure(id, f[3], reason, now)
      else
        transition(id, 'failed', now, 'error', reason, 'errors', errors, 'finished_ms', now)
        redis.call('ZADD', k('dead'), now, id)
        redis.call('INCR', k('count', 'failed'))
        publish_failure(id, f[3], reason, nil)
      end
    end
  else
    return 0
  end
  wake()
  return 1
end

-- Take a worker out of the free index and put back the unstarted jobs of its inbox (their
-- slots freed, but not offered: heartbeat.lua re-indexes the worker when it is seen again).
local function pause_worker(worker, now)
  set_free(worker, 0)
  local returned = 0
  for _, id in ipairs(redis.call('LRANGE', k('inbox', worker), 0, -1)) do
    local f = redis.call('HMGET', k('job', id), 'status', 'worker')
    if f[1] == 'assigned' and f[2] == worker then returned = returned + requeue(id, '', now, false) end
  end
  redis.call('DEL', k('inbox', worker))
  if returned > 0 then
    local load = redis.call('HINCRBY', k('load'), worker, -returned)
    if load < 0 then redis.call('HSET', k('load'), worker, 0) end
  end
end

-- Start the worker's next assigned job (take.lua, and finish.lua for the job after).
-- Checking "still assigned to me", counting the attempt and taking the running lease go
-- together; inbox entries left over from a reassignment or a cancel are skipped here
-- instead of being started twice. `id` is one already popped by a blocking LPOP, if any.
-- Returns nil when the inbox is empty, else {id, wait_ms, then the TAKE_FIELDS values in
-- that order} (a field the hash lacks is false, nil to the caller; `attempts` is the
-- attempt starting now). wait_ms is -1 when unknown (a job queued before queued_ms was
-- recorded), measured on the Redis clock like queued_ms.
-- `running` is not recorded for MongoDB here: most jobs finish before anyone could see it,
-- and their outcome's snapshot would outdate it in the same outbox batch. The worker's
-- heartbeat records it for a job still running then (heartbeat.lua, `shown`), so MongoDB
-- shows running only for jobs that run long enough to be seen; reads merge Redis's state.
-- Subscribers are told at once (job.started): an event costs no MongoDB write.
local TAKE_OWN = {'status', 'worker', 'rev', 'queued_ms', 'attempts', 'node', 'progress', 'sub'}
local TAKE_READ = {unpack(TAKE_OWN)}
local TAKE_TYPE, TAKE_QUEUE  -- where the event labels are in the reply
for _, name in ipairs(TAKE_FIELDS) do
  TAKE_READ[#TAKE_READ + 1] = name
  if name == 'type' then TAKE_TYPE = #TAKE_READ elseif name == 'queue' then TAKE_QUEUE = #TAKE_READ end
end
local function take_next(worker, lease_ms, id, now)
  now = now or now_ms()
  for _ = 1, 1000 do
    if not id or id == '' then id = redis.call('LPOP', k('inbox', worker)) end
    if not id then return nil end
    local j = redis.call('HMGET', k('job', id), unpack(TAKE_READ))
    if j[1] == 'assigned' and j[2] == worker then
      local attempts = (tonumber(j[5]) or 0) + 1
      redis.call('HSET', k('job', id), 'status', 'running', 'updated_ms', now,
                 'rev', (tonumber(j[3]) or 0) + 1, 'started_ms', now, 'attempts', attempts, 'shown', 0)
      if j[7] then redis.call('HDEL', k('job', id), 'progress') end  -- a new attempt starts afresh
      redis.call('ZADD', k('leases'), now + lease_ms, id)
      publish_job_as('job.started', id, {j[TAKE_TYPE], j[TAKE_QUEUE], j[8]}, 'attempt', attempts, 'worker', worker,
                     'node', j[6] or '')
      local wait_ms = -1
      if j[4] then wait_ms = math.max(0, now - tonumber(j[4])) end
      local row = {id, wait_ms}
      for i, name in ipairs(TAKE_FIELDS) do
        if name == 'attempts' then row[i + 2] = attempts else row[i + 2] = j[#TAKE_OWN + i] end
      end
      return row
    end
    id = nil
  end
  return nil
end

local function check_fence(node, token)
  if redis.call('GET', k('leader')) ~= node .. ' ' .. token then
    return redis.error_reply('NOT_LEADER')
  end
end
