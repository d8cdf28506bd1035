"""Storage adapters: the only code that speaks to Redis and MongoDB.

`storage.redis` owns every Redis key name, the Lua scripts, the outbox stream and the
mapping of Redis driver errors to jobnode's typed errors; `storage.mongo` owns the
collections, their indexes and the mapping of MongoDB driver errors. Imports `core` only.
"""
