-- forget.lua: drop finished jobs from Redis once MongoDB has recorded their final state.
-- ARGV: prefix, then pairs: id, rev (the rev MongoDB now holds).
-- Atomic per job so a job that changed again meanwhile (an admin retry bumps its rev)
-- is kept.
local dropped = 0
for i = 2, #ARGV, 2 do
  local jkey = k('job', ARGV[i])
  local f = redis.call('HMGET', jkey, 'status', 'rev')
  if f[2] == ARGV[i + 1] and (f[1] == 'completed' or f[1] == 'failed' or f[1] == 'cancelled') then
    redis.call('DEL', jkey)
    dropped = dropped + 1
  end
end
return dropped
