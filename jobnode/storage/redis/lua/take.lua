-- take.lua: a worker starts its next assigned job (see take_next in lib.lua).
-- ARGV: prefix, worker, lease_ms, [id] (an id already popped by a blocking LPOP).
-- One script so that the checks, the attempt count and the lease happen together.
return take_next(ARGV[2], tonumber(ARGV[3]), ARGV[4])
