"""Where Redis driver errors become jobnode's typed errors: every Redis call goes through this."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import structlog
from redis import exceptions as redis_errors

from jobnode.core import store_errors
from jobnode.core.errors import NotLeader, Unavailable

log = structlog.get_logger(__name__)

# What callers (and so the public) are told: the driver's text names hosts and ports.
REDIS_UNAVAILABLE = "redis unavailable"

P = ParamSpec("P")
R = TypeVar("R")


def redis_boundary(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """NOT_LEADER from a fenced script becomes NotLeader; an unreachable Redis, Unavailable."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except redis_errors.ResponseError as exc:
            if "NOT_LEADER" in str(exc):
                raise NotLeader("this node does not hold the leader lease") from None
            # Redis answered with an error: out of memory under noeviction, a script error, ...
            store_errors.report("redis", fn.__name__, "refused")
            # Redis 7 refuses a write script before it runs (OutOfMemoryError); 6.2 fails it at its
            # first write, and the reply is a script error that carries the OOM.
            if isinstance(exc, redis_errors.OutOfMemoryError) or "OOM command not allowed" in str(exc):
                # Full under maxmemory-policy noeviction: nothing was written, and a later try
                # may fit once the outbox drains, so the caller gets a 503 to come back after.
                raise Unavailable(f"redis is full and refuses writes: {exc}") from exc
            raise
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            store_errors.report("redis", fn.__name__, "unreachable")
            log.warning("redis.unavailable", call=fn.__qualname__, error=str(exc) or type(exc).__name__)
            raise Unavailable(REDIS_UNAVAILABLE) from exc

    return wrapper
