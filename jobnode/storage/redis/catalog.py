"""The cluster's job types in Redis: what each node runs, published so every node can check submissions.

Keys (under the configured prefix P):
  P:types   hash  job type -> its TypeSpec as JSON (queue, payload schema, description)
  P:queues  hash  queue name -> the node that last declared serving it

A node writes its types when it starts (so the last node started with a type decides its
schema: a rolling deploy ends with the new one) and, later, only types the hash lacks (so
nodes with different versions of a type do not overwrite each other in turn). Which nodes
run a type now is read from the registered worker groups (JobQueue.served), not from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson
from redis.asyncio import Redis

from jobnode.core.job_types import TypeSpec
from jobnode.storage.redis.boundary import redis_boundary


class CatalogStore:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.types_key = f"{prefix}:types"
        self.queues_key = f"{prefix}:queues"

    @redis_boundary
    async def publish(self, node_id: str, specs: Sequence[TypeSpec], queues: Iterable[str], *,
                      replace: bool) -> None:
        """Declare a node's types and queues; `replace` False keeps what other nodes declared."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for spec in specs:
                text = orjson.dumps(spec.to_json())
                if replace:
                    pipe.hset(self.types_key, spec.type, text)
                else:
                    pipe.hsetnx(self.types_key, spec.type, text)
            for queue in queues:
                pipe.hset(self.queues_key, queue, node_id)
            await pipe.execute()

    @redis_boundary
    async def read(self) -> tuple[dict[str, TypeSpec], set[str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.types_key)
            pipe.hkeys(self.queues_key)
            types, queues = await pipe.execute()
        specs = {}
        for raw in types.values():
            spec = TypeSpec.from_json(orjson.loads(raw))
            specs[spec.type] = spec
        return specs, {q.decode() if isinstance(q, bytes) else q for q in queues}
