-- take.lua: a worker starts its next assigned job.
-- ARGV: prefix, worker, lease_ms, [id] (an id already popped by a blocking LPOP).
-- Atomic so that checking "still assigned to me", counting the attempt and taking the
-- running lease happen together; inbox entries left over from a reassignment or a
-- cancel are skipped here instead of being started twice.
-- Returns nil when the inbox is empty, else {id, type, payload, attempts, max_retries,
-- timeout_ms, priority, wait_ms, request_id}; wait_ms is -1 when unknown (a job queued
-- before queued_ms was recorded), measured on the Redis clock like queued_ms.
local worker, lease_ms = ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local id = ARGV[4]
for _ = 1, 1000 do
  if not id or id == '' then id = redis.call('LPOP', k('inbox', worker)) end
  if not id then return nil end
  local jkey = k('job', id)
  local f = redis.call('HMGET', jkey, 'status', 'worker')
  if f[1] == 'assigned' and f[2] == worker then
    local attempts = redis.call('HINCRBY', jkey, 'attempts', 1)
    transition(id, 'running', now, 'started_ms', now)
    redis.call('ZADD', k('leases'), now + lease_ms, id)
    local j = redis.call('HMGET', jkey, 'type', 'payload', 'max_retries', 'timeout_ms', 'priority',
                         'queued_ms', 'rid')
    local wait_ms = -1
    if j[6] then wait_ms = math.max(0, now - tonumber(j[6])) end
    return {id, j[1], j[2], attempts, j[3], j[4], j[5], wait_ms, j[7] or ''}
  end
  id = nil
end
return nil
