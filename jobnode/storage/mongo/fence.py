"""The fencing-token counter kept in MongoDB: the floor under every new leader lease's token.

Redis alone cannot promise that tokens only grow: a primary that fails over to a replica which
had not yet received the last lease change takes the counter back with it (replication is
asynchronous), and a Redis restarted without its last writes does the same. So each new holder
first draws a number from this counter, written with majority write concern, and the lease
script gives it a token no smaller (jobnode/storage/redis/lua/leader_lease.lua). A MongoDB
replica set keeps a majority-acknowledged increment across its own failovers, so the token of a
new lease is larger than any token handed out before, whatever Redis forgot.

Cost: one MongoDB round trip each time the lease changes hands (never on a renewal), and a
node cannot take the lease while MongoDB is out of reach; a holder keeps renewing without it.
"""

from __future__ import annotations

from pymongo import ReturnDocument, WriteConcern
from pymongo.asynchronous.database import AsyncDatabase

from jobnode.storage.mongo.boundary import mongo_boundary

COLLECTION = "counters"
FENCE_ID = "leader_fence"
MAJORITY = WriteConcern(w="majority", j=True)


class FenceCounter:
    """Draws fencing-token floors and raises the counter to a token Redis handed out above it."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._counters = db.get_collection(COLLECTION, write_concern=MAJORITY)

    @mongo_boundary
    async def draw(self) -> int:
        """A number larger than every one drawn or raised to before."""
        doc = await self._counters.find_one_and_update(
            {"_id": FENCE_ID}, {"$inc": {"value": 1}}, upsert=True, return_document=ReturnDocument.AFTER)
        return int(doc["value"])

    @mongo_boundary
    async def raise_to(self, token: int) -> None:
        """Record that `token` was handed out (Redis's own counter was ahead of this one)."""
        await self._counters.update_one({"_id": FENCE_ID}, {"$max": {"value": token}}, upsert=True)
