"""Per-client rate limiting of the HTTP API: a token bucket per client, kept in Redis.

Each client has a bucket of `RATE_LIMIT_BURST` tokens (RATE_LIMIT when 0) that refills at
`RATE_LIMIT` tokens per minute; a request spends one. The bucket lives in Redis and is
spent by one Lua script (lua/rate_limit.lua), so a client's budget is shared by every node
of the cluster and concurrent requests never spend the same token twice.

Who is a client: the authenticated subject when an auth middleware put a principal on the
request, otherwise the peer IP address of the TCP connection. X-Forwarded-For is not
trusted (any client could write one); put the limit in the proxy when one fronts jobnode.
An auth middleware must therefore come before `rate_limit_middleware` in `app.middlewares`;
requests it refuses (401) are then not counted, while `/auth/login` is limited per address.

Not limited: `/health` (load balancers and orchestrators poll it), the peer routes under
`/internal/` (election traffic is signed, and throttling it could cost a leader), and the
metrics endpoint (its own port, not this application).

Every limited answer carries `X-RateLimit-Limit` (the bucket size), `X-RateLimit-Remaining`
(whole tokens left) and `X-RateLimit-Reset` (seconds until the bucket is full again); a
refused request is a 429 with `Retry-After` (seconds until the next token).

When Redis cannot answer within `CHECK_TIMEOUT_S`, the request is let through (fail open:
an outage of the limiter must not become an outage of the API, and submissions fail on
their own with 503 if Redis is really gone) and counted in `fail_open`, which
/api/v1/stats shows and the log reports.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobnode.api.access import principal_of
from jobnode.api.appkeys import RATE_LIMITER, REDIS, SETTINGS
from jobnode.core.errors import RateLimited
from jobnode.storage.redis.scripts import script_source

log = structlog.get_logger(__name__)

CHECK_TIMEOUT_S = 1.0
FAIL_OPEN_LOG_EVERY_S = 60.0
EXEMPT_PATHS = frozenset({"/health"})
EXEMPT_PREFIXES = ("/internal/",)
MAX_CLIENT_KEY_CHARS = 128


@dataclass(frozen=True)
class Decision:
    """What the bucket said about one request."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: float
    retry_after_s: float

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_s)),
        }


# A typed request key where aiohttp has them (3.14+); older versions take the plain string.
DECISION_KEY = (web.RequestKey("rate_limit_decision", Decision) if hasattr(web, "RequestKey")
                else "rate_limit_decision")


class RateLimiter:
    """Spends tokens from clients' buckets in Redis; lets requests through when Redis fails."""

    def __init__(self, redis: Redis, prefix: str, rate_per_min: int, burst: int,
                 timeout_s: float = CHECK_TIMEOUT_S) -> None:
        self.rate_per_min = rate_per_min
        self.capacity = burst or rate_per_min
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._script = redis.register_script(script_source("rate_limit"))
        self.allowed = 0
        self.limited = 0
        self.fail_open = 0
        self._fail_open_logged_at: float | None = None

    async def check(self, client: str) -> Decision | None:
        """Spend one of `client`'s tokens; None when Redis could not say (the request goes through)."""
        args = [self._prefix, client, self.rate_per_min, self.capacity]
        try:
            allowed, remaining, full_ms, wait_ms = await asyncio.wait_for(
                self._script(keys=[], args=args), timeout=self._timeout_s)
        except (RedisError, OSError, TimeoutError) as exc:
            self._count_fail_open(exc)
            return None
        decision = Decision(bool(allowed), self.capacity, int(remaining), full_ms / 1000, wait_ms / 1000)
        if decision.allowed:
            self.allowed += 1
        else:
            self.limited += 1
        return decision

    def _count_fail_open(self, exc: BaseException) -> None:
        self.fail_open += 1
        now = asyncio.get_running_loop().time()
        if self._fail_open_logged_at is None or now - self._fail_open_logged_at >= FAIL_OPEN_LOG_EVERY_S:
            self._fail_open_logged_at = now
            log.warning("ratelimit.fail_open", error=str(exc) or type(exc).__name__, fail_open_total=self.fail_open)

    def counters(self) -> dict[str, object]:
        return {"enabled": True, "rate_per_min": self.rate_per_min, "burst": self.capacity,
                "allowed": self.allowed, "limited": self.limited, "fail_open": self.fail_open}


def client_key(request: web.Request) -> str:
    """Whose bucket a request spends from: `user:<subject>` when authenticated, else `ip:<address>`."""
    principal = principal_of(request)
    if principal is not None:
        return "user:" + _bounded(principal.subject)
    return "ip:" + _bounded(request.remote or "unknown")


def _bounded(text: str) -> str:
    # A key must stay small whatever a token's subject holds.
    if len(text) <= MAX_CLIENT_KEY_CHARS:
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def is_exempt(path: str) -> bool:
    return path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES)


@web.middleware
async def rate_limit_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Spend a token or refuse with RateLimited (error_middleware, outside this one, makes it a 429)."""
    limiter = request.app.get(RATE_LIMITER)
    if limiter is None or is_exempt(request.path):
        return await handler(request)
    decision = await limiter.check(client_key(request))
    if decision is None:
        return await handler(request)
    request[DECISION_KEY] = decision
    if not decision.allowed:
        raise RateLimited(
            f"rate limit of {limiter.rate_per_min} requests per minute exceeded; retry in "
            f"{math.ceil(decision.retry_after_s)}s",
            retry_after_s=decision.retry_after_s,
            details={"limit_per_min": limiter.rate_per_min, "burst": limiter.capacity},
        )
    return await handler(request)


async def add_rate_limit_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer to a limited request says where its client stands,
    errors included (they are built by error_middleware, after this request's token was spent)."""
    decision = request.get(DECISION_KEY)
    if decision is not None:
        response.headers.update(decision.headers())


async def rate_limiter_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the limiter, on the node's Redis connection (appended after `connections`)."""
    settings = app[SETTINGS]
    app[RATE_LIMITER] = RateLimiter(app[REDIS], settings.redis_key_prefix, settings.rate_limit_per_min,
                                    settings.rate_limit_burst)
    yield


def enable(app: web.Application) -> None:
    """Wire rate limiting into an app whose settings ask for it (RATE_LIMIT > 0)."""
    app.middlewares.append(rate_limit_middleware)
    app.on_response_prepare.append(add_rate_limit_headers)
    app.cleanup_ctx.append(rate_limiter_context)
