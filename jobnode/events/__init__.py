"""The live event stream: events as subscribers see them, filters, resume and gap decisions,
the text/event-stream wire format, and the per-node hub that fans the Redis stream out.

The events themselves are written by the Lua scripts, in the same atomic step as the change
they describe (jobnode/storage/redis/lua/lib.lua, `publish`); this package only reads them.
"""
