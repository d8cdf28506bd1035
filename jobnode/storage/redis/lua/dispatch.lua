-- dispatch.lua: the leader's dispatch step: promote due delayed jobs, then assign ready
-- jobs to workers with free capacity that can run them, chosen by the load-balancing
-- strategy among those workers.
-- ARGV: prefix, node, token, max_jobs, strategy, lease_ms, share_every, seed.
-- Returns {assigned, free workers, ms until a rate limit lets a waiting job go (0: none)}.
-- Atomic and fenced: it runs only while ARGV's node and token hold the leader lease, so
-- a stale leader (paused, partitioned, or behind on the election) can never assign a job,
-- and no job is ever popped without landing in exactly one worker's inbox.
local node, token = ARGV[2], ARGV[3]
local err = check_fence(node, token)
if err then return err end
local max_jobs, strategy, lease_ms = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local share_every, rng = tonumber(ARGV[7]), tonumber(ARGV[8])
local now = now_ms()

-- The first dispatch after a takeover pauses the workers of the node taken over from
-- (leader_lease.lua): out of the free index until their next heartbeat shows them alive
-- (heartbeat.lua puts them back), and the jobs waiting unstarted in their inboxes go back
-- to the queue at their old place. If that node is alive after all, nothing is lost: its
-- take of a job moved here finds it no longer assigned to it and skips it. Its running
-- jobs keep their leases, as with any silent worker, until the reaper decides.
local previous = redis.call('GET', k('leader:previous'))
if previous then
  redis.call('DEL', k('leader:previous'))
  local workers = redis.call('HGETALL', k('workers'))
  for i = 1, #workers, 2 do
    if workers[i + 1] == previous then pause_worker(workers[i], now) end
  end
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', k('delayed'), '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', k('delayed'), id)
  local f = redis.call('HMGET', k('job', id), 'status', 'priority', 'seq', 'queue', 'type')
  if f[1] == 'retrying' then transition(id, 'pending', now) end
  if f[1] == 'retrying' or f[1] == 'pending' then
    ready_add(id, tonumber(f[2]), tonumber(f[3]), route_of(f[4], f[5]))
  end
end

-- Jobs queued by a version without queues wait in one ready set (P:ready, P:fifo): move
-- them to their routes, a bounded number per call, so an upgrade strands none of them.
if redis.call('EXISTS', k('ready')) == 1 then
  for _, id in ipairs(redis.call('ZRANGE', k('ready'), 0, 999)) do
    local f = redis.call('HMGET', k('job', id), 'priority', 'seq', 'queue', 'type')
    redis.call('ZREM', k('ready'), id)
    redis.call('ZREM', k('fifo'), id)
    if f[1] and f[2] then ready_add(id, tonumber(f[1]), tonumber(f[2]), route_of(f[3], f[4])) end
  end
end

-- Per-call state, read once and written back at the end: the dispatch counter (for the
-- starvation guard), the round-robin cursor, and each worker's node and capacity.
local dispatches = tonumber(redis.call('GET', k('dispatch_count')) or 0)
local cursor = redis.call('GET', k('rr_cursor'))
local node_of, capacity_of = {}, {}

-- The worker groups (see lib.lua), each with its count of workers with a free slot:
-- counted once, then kept here (only assign_to fills slots in this script).
local groups = {}
local group_defs = redis.call('HGETALL', k('groups'))
for i = 1, #group_defs, 2 do
  local def = cjson.decode(group_defs[i + 1])
  local g = {id = group_defs[i], queues = {}, types = {}, any_type = def.t == nil, free = -1}
  for _, q in ipairs(def.q) do g.queues[q] = true end
  for _, t in ipairs(def.t or {}) do g.types[t] = true end
  groups[#groups + 1] = g
end
local function free_of(g)
  if g.free < 0 then g.free = redis.call('ZCARD', k('free', g.id)) end
  return g.free
end

-- The routes (queue, type) with ready jobs that some group can run. A route no group can
-- run is left alone: its jobs stay pending until a node that can run them registers.
-- Each route keeps a window of its first ready jobs, read once per call; the jobs this
-- call assigns are removed from its sets in one command per route at the end.
local routes = {}
for _, route in ipairs(redis.call('SMEMBERS', k('routes'))) do
  local sep = string.find(route, ':', 1, true)
  local queue, job_type = string.sub(route, 1, sep - 1), string.sub(route, sep + 1)
  local eligible = {}
  for _, g in ipairs(groups) do
    if g.queues[queue] and (g.any_type or g.types[job_type]) then eligible[#eligible + 1] = g end
  end
  if #eligible > 0 then
    routes[#routes + 1] = {name = route, eligible = eligible, window = nil, pos = 1, taken = {}}
  end
end

-- Flow limits (P:limits, written by jobnode/storage/redis/flow_limits.py): per queue, per
-- type and per submitting user, a rate (GCRA without burst: one job per ms/n, the next
-- allowed time kept in P:limit_tat), a concurrency (the running set P:lrun:{key}, see
-- release_limits in lib.lua) and a pause. A job held back by one stays pending in its ready
-- set. With no limit set this costs one HGETALL per call and nothing per job.
local limits, user_limits, default_user = nil, false, nil
local limit_defs = redis.call('HGETALL', k('limits'))
if #limit_defs > 0 then
  limits = {}
  for i = 1, #limit_defs, 2 do
    local d = cjson.decode(limit_defs[i + 1])
    limits[limit_defs[i]] = {key = limit_defs[i], n = d.n, ms = d.ms, c = d.c, paused = d.p == 1, waiting = 0}
    if string.sub(limit_defs[i], 1, 5) == 'user:' then user_limits = true end
  end
  default_user = limits['user:*']
end
local wait_hint = 0  -- the soonest a rate-limited job may go, in ms from now
local function limit_open(l)
  if l.paused then return false end
  if l.c then
    if not l.running then l.running = redis.call('SCARD', k('lrun', l.key)) end
    if l.running >= l.c then return false end
  end
  if l.n then
    if not l.tat then l.tat = tonumber(redis.call('HGET', k('limit_tat'), l.key) or 0) end
    if l.tat > now then
      if wait_hint == 0 or l.tat - now < wait_hint then wait_hint = l.tat - now end
      return false
    end
  end
  return true
end
local function limit_take(l, id, held)
  if l.c then
    redis.call('SADD', k('lrun', l.key), id)
    l.running = (l.running or 0) + 1
    held[#held + 1] = l.key
    if l.default then  -- the user:* row shows every job running under the default cap
      redis.call('SADD', k('lrun', 'user:*'), id)
      held[#held + 1] = 'user:*'
    end
  end
  if l.n then
    l.tat = math.max(l.tat or 0, now) + math.floor(l.ms / l.n)
    l.dirty = true
  end
end
-- A user's limit: their own, else the one for every user (user:*), counted per user.
local user_state = {}
local function user_limit(user)
  if not user_limits or not user or user == '' then return nil end
  local l = user_state[user]
  if l == nil then
    local d = limits['user:' .. user] or default_user
    l = false
    if d then
      l = {key = 'user:' .. user, n = d.n, ms = d.ms, c = d.c, paused = d.paused, waiting = 0,
           default = d == default_user}
    end
    user_state[user] = l
  end
  return l or nil
end
local submitter_of = {}
local function user_open(id)
  local user = submitter_of[id]
  if user == nil then
    user = redis.call('HGET', k('job', id), 'sub') or ''
    submitter_of[id] = user
  end
  local l = user_limit(user)
  if l and not limit_open(l) then
    l.waiting = l.waiting + 1
    return false
  end
  return true
end
if limits then
  for _, r in ipairs(routes) do
    local sep = string.find(r.name, ':', 1, true)
    r.limits = {}
    r.limits[#r.limits + 1] = limits['queue:' .. string.sub(r.name, 1, sep - 1)]
    r.limits[#r.limits + 1] = limits['type:' .. string.sub(r.name, sep + 1)]
  end
end
local function route_open(r)
  if not r.limits then return true end
  for _, l in ipairs(r.limits) do
    if not limit_open(l) then return false end
  end
  return true
end
local USER_SCAN_MAX = 256  -- jobs of capped users passed over per route and call, at most
local skipped_ids = {}

local WINDOW = math.min(max_jobs, 16)  -- larger windows measured slower (more reply to build and convert)
local function has_free(r)
  for _, g in ipairs(r.eligible) do
    if free_of(g) > 0 then return true end
  end
  return false
end
local function flush(r)
  if #r.taken > 0 then
    redis.call('ZREM', k('ready', r.name), unpack(r.taken))
    redis.call('ZREM', k('fifo', r.name), unpack(r.taken))
    r.taken = {}
  end
end
-- The route's next ready job not yet taken by this call: id, score; nil when it has none.
-- The answer is kept (r.id, r.score) until that job is taken.
local taken_ids = {}
local function head(r)
  if r.id and not taken_ids[r.id] then return r.id, r.score end
  while true do
    if not r.window or r.pos > #r.window then
      flush(r)
      -- Jobs passed over for their user's limit stay at the front: the window starts after them.
      local skipped = r.skipped or 0
      r.window = redis.call('ZRANGE', k('ready', r.name), skipped, skipped + WINDOW - 1, 'WITHSCORES')
      r.pos = 1
      if #r.window == 0 then
        -- ready_add puts the route back with its next job
        if skipped == 0 then redis.call('SREM', k('routes'), r.name) end
        r.empty, r.id = true, nil
        return nil
      end
    end
    local id = r.window[r.pos]
    r.pos = r.pos + 2
    if not taken_ids[id] and not skipped_ids[id] then
      if user_limits and not user_open(id) then
        skipped_ids[id] = true
        r.skipped = (r.skipped or 0) + 1
        if r.skipped >= USER_SCAN_MAX then r.empty, r.id = true, nil; return nil end
      else
        r.id, r.score = id, tonumber(r.window[r.pos - 1])
        return r.id, r.score
      end
    end
  end
end

-- The next job to assign: the most urgent (priority band, then sequence) among the routes
-- that have a free eligible worker. Starvation guard: every share_every-th pick takes the
-- oldest such job whatever its priority, so a flood of urgent jobs slows low-priority ones
-- but never stops them.
local function next_job()
  dispatches = dispatches + 1
  local oldest = share_every > 0 and dispatches % share_every == 0
  local best, best_id, best_score
  for _, r in ipairs(routes) do
    if not r.empty and has_free(r) and route_open(r) then
      local id, score
      if oldest then
        -- The route's window stays: a job taken here is skipped there (taken_ids).
        flush(r)
        local first = redis.call('ZRANGE', k('fifo', r.name), 0, 0, 'WITHSCORES')
        if first[1] and not skipped_ids[first[1]] and (not user_limits or user_open(first[1])) then
          id, score = first[1], tonumber(first[2])
        else
          id, score = head(r)
        end
      else
        id, score = head(r)
      end
      if id and (not best_score or score < best_score) then best, best_id, best_score = r, id, score end
    end
  end
  if not best then return nil end
  taken_ids[best_id] = true
  best.taken[#best.taken + 1] = best_id
  return best_id, best
end

local function random_index(n)
  rng = (rng * 16807) % 2147483647 -- Park-Miller: exact in doubles, seeded by the caller
  return rng % n
end

-- Each choice is O(log n) in the number of workers with free capacity, per eligible group
-- (one group in a cluster whose nodes serve the same queues and types).
local function choose_worker(priority, r)
  local mode = strategy
  if mode == 'priority' then
    if priority >= 8 then mode = 'least_loaded' else mode = 'round_robin' end
  end
  local open = r.eligible
  if #open > 1 then
    open = {}
    for _, g in ipairs(r.eligible) do
      if free_of(g) > 0 then open[#open + 1] = g end
    end
  end
  if mode == 'least_loaded' then
    local best, best_group, most = nil, nil, -1
    for _, g in ipairs(open) do
      local top = redis.call('ZREVRANGE', k('free', g.id), 0, 0, 'WITHSCORES')
      if top[1] and tonumber(top[2]) > most then best, best_group, most = top[1], g, tonumber(top[2]) end
    end
    return best, best_group
  elseif mode == 'random' then
    local total = 0
    for _, g in ipairs(open) do total = total + g.free end
    local i = random_index(total)
    for _, g in ipairs(open) do
      if i < g.free then return redis.call('ZRANGE', k('free_rr', g.id), i, i)[1], g end
      i = i - g.free
    end
  end
  -- round robin: the first free worker by name after the cursor, over every open group
  local best, best_group
  for pass = 1, 2 do
    for _, g in ipairs(open) do
      local w
      if pass == 1 then
        if cursor then w = redis.call('ZRANGEBYLEX', k('free_rr', g.id), '(' .. cursor, '+', 'LIMIT', 0, 1)[1] end
      else
        w = redis.call('ZRANGEBYLEX', k('free_rr', g.id), '-', '+', 'LIMIT', 0, 1)[1]
      end
      if w and (not best or w < best) then best, best_group = w, g end
    end
    if best then break end
  end
  cursor = best
  return best, best_group
end

-- Count one more job against the worker's capacity; returns the worker's node.
local function assign_to(worker, g)
  if not node_of[worker] then
    node_of[worker] = redis.call('HGET', k('workers'), worker)
    capacity_of[worker] = tonumber(redis.call('HGET', k('capacity'), worker) or 0)
  end
  local load = redis.call('HINCRBY', k('load'), worker, 1)
  set_free(worker, capacity_of[worker] - load, g.id)
  if capacity_of[worker] - load <= 0 then g.free = g.free - 1 end
  return node_of[worker]
end

local assigned = 0
local start_count, start_cursor = dispatches, cursor
while assigned < max_jobs do
  local id, r = next_job()
  if not id then break end
  local jkey = k('job', id)
  local f = redis.call('HMGET', jkey, 'status', 'priority', 'rev')
  if f[1] == 'pending' then
    local worker, g = choose_worker(tonumber(f[2]), r)
    local worker_node = assign_to(worker, g)
    mark_assigned(id, f[3], worker, worker_node, now, lease_ms)
    if limits then
      local held = {}
      for _, l in ipairs(r.limits) do limit_take(l, id, held) end
      local ul = user_limit(submitter_of[id] or redis.call('HGET', jkey, 'sub'))
      if ul then limit_take(ul, id, held) end
      if #held > 0 then redis.call('HSET', jkey, 'lim', table.concat(held, ' ')) end
    end
    redis.call('RPUSH', k('inbox', worker), id)
    assigned = assigned + 1
  end
end
for _, r in ipairs(routes) do flush(r) end
if dispatches ~= start_count then redis.call('SET', k('dispatch_count'), dispatches) end
if cursor and cursor ~= start_cursor then redis.call('SET', k('rr_cursor'), cursor) end
local free_workers = 0
for _, g in ipairs(groups) do free_workers = free_workers + math.max(free_of(g), 0) end
if limits then
  -- What waits on which limit (GET /api/v1/limits and the stats read P:limit_waiting): a
  -- route's ready jobs count against the first of its limits that holds them back.
  for _, r in ipairs(routes) do
    for _, l in ipairs(r.limits) do
      if not limit_open(l) then
        l.waiting = l.waiting + redis.call('ZCARD', k('ready', r.name))
        break
      end
    end
  end
  local tats, waiting = {}, {}
  for _, l in pairs(user_state) do
    if l and l.dirty then tats[#tats + 1] = l.key; tats[#tats + 1] = l.tat end
    if l and l.default then
      default_user.waiting = default_user.waiting + l.waiting
    elseif l and l.waiting > 0 then
      waiting[#waiting + 1] = l.key; waiting[#waiting + 1] = l.waiting
    end
  end
  for key, l in pairs(limits) do
    if l.dirty then tats[#tats + 1] = key; tats[#tats + 1] = l.tat end
    waiting[#waiting + 1] = key; waiting[#waiting + 1] = l.waiting
  end
  if #tats > 0 then redis.call('HSET', k('limit_tat'), unpack(tats)) end
  redis.call('DEL', k('limit_waiting'))
  redis.call('HSET', k('limit_waiting'), unpack(waiting))
end
return {assigned, free_workers, wait_hint}
