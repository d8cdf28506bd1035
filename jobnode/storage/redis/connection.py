"""The node's one Redis client: a single server from REDIS_ADDR, or the primary that Sentinel names.

Under Sentinel (REDIS_SENTINELS and REDIS_SENTINEL_MASTER) the client asks the sentinels for the
primary's address each time it opens a connection, and a connection to a server that stopped being
the primary (gone, or demoted to a replica and answering READONLY) is dropped and opened again, so
after a failover the next call reaches the new primary without a restart of the node. What was
written to the old primary and not yet replicated is lost with it: the fencing token survives that
(jobnode/storage/redis/lease.py), and the reconciler queues the jobs MongoDB holds and Redis lost.

Sentinels are asked without a password: protect them by network policy, or run them with the same
`requirepass` as the data servers (REDIS_PASSWORD is then given to both).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel

from jobnode.core.settings import Settings

# Why these: a primary that does not answer the connect in 5 s is as good as gone (Sentinel will
# fail it over); 10 s for a reply covers a slow script on a loaded server.
CONNECT_TIMEOUT_S = 5
REPLY_TIMEOUT_S = 10
HEALTH_CHECK_INTERVAL_S = 15
# The sentinels themselves must answer quickly: a silent one is skipped for the next.
SENTINEL_TIMEOUT_S = 1


@dataclass
class RedisConnection:
    """The client the node uses, and the sentinels behind it (None for a single server)."""

    client: Redis
    sentinel: Sentinel | None = None

    @property
    def where(self) -> str:
        """Where the client connects, for messages: a URL or the sentinels and master name."""
        if self.sentinel is None:
            pool = self.client.connection_pool
            kwargs = pool.connection_kwargs
            return f"redis://{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
        return "sentinels " + ",".join(
            f"{s.connection_pool.connection_kwargs['host']}:{s.connection_pool.connection_kwargs['port']}"
            for s in self.sentinel.sentinels
        )

    async def close(self) -> None:
        await self.client.aclose()
        if self.sentinel is not None:
            for sentinel in self.sentinel.sentinels:
                await sentinel.aclose()


def connect(settings: Settings) -> RedisConnection:
    """Build (without connecting yet) the Redis client these settings describe."""
    timeouts = {"socket_connect_timeout": CONNECT_TIMEOUT_S, "socket_timeout": REPLY_TIMEOUT_S,
                "health_check_interval": HEALTH_CHECK_INTERVAL_S}
    if not settings.redis_sentinels:
        return RedisConnection(Redis.from_url(settings.redis_url, password=settings.redis_password,
                                              db=settings.redis_db, **timeouts))
    tls = urlsplit(settings.redis_addr).scheme == "rediss" if "://" in settings.redis_addr else False
    sentinel = Sentinel(
        list(settings.redis_sentinels),
        sentinel_kwargs={"socket_connect_timeout": SENTINEL_TIMEOUT_S, "socket_timeout": SENTINEL_TIMEOUT_S},
        password=settings.redis_password, db=settings.redis_db, ssl=tls, **timeouts,
    )
    return RedisConnection(sentinel.master_for(settings.redis_sentinel_master, redis_class=Redis), sentinel)
