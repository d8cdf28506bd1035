"""The Redis adapter: key layout, Lua scripts, the job queue, the leader lease and the outbox stream."""
