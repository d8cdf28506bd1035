-- progress.lua: workers report how far their running jobs have come.
-- ARGV: prefix, then per report: worker, id, fraction (0..1), message ('' for none).
-- Atomic so that only the worker running the job may set its progress: a late report from
-- a worker that lost the job (cancelled, reclaimed) changes nothing and publishes nothing.
-- Progress is not a state change: no rev, no outbox entry. The `progress` field rides along
-- with the job's next snapshot to MongoDB, and reads merge it from here meanwhile.
-- Returns the number of reports accepted.
local now = now_ms()
local accepted = 0
for i = 2, #ARGV, 4 do
  local worker, id, fraction, message = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local f = redis.call('HMGET', k('job', id), 'status', 'worker', 'attempts')
  if f[1] == 'running' and f[2] == worker then
    local shown = {fraction = fraction, at_ms = now}
    if message ~= '' then shown.message = message end
    redis.call('HSET', k('job', id), 'progress', cjson.encode(shown))
    publish_job('job.progress', id, 'attempt', f[3] or 0, 'fraction', ARGV[i + 2], 'message', message)
    accepted = accepted + 1
  end
end
return accepted
