"""Per-client rate limiting of the HTTP API: the middleware and who counts as a client.

The budget itself (a token bucket per client, shared by the cluster, failing open when
Redis cannot answer) is `jobnode.services.rate_limiter.RateLimiter`; this module decides
whose bucket a request spends from, which requests are exempt, and how the answer shows.

Who is a client: the authenticated subject when an auth middleware put a principal on the
request, otherwise the peer IP address of the TCP connection. X-Forwarded-For is not
trusted (any client could write one); put the limit in the proxy when one fronts jobnode.
An auth middleware must therefore come before `rate_limit_middleware` in `app.middlewares`.

Refusals count too: a request answered 401 or 403 (a bad token, a role too low, a peer
request that fails its checks) spends a token from its address's bucket
(`refusal_limit_middleware`, outside the auth middleware), so guessing tokens from one
address ends in 429 like any other flood.

Not limited: `/health` (load balancers and orchestrators poll it), the peer routes under
`/internal/` (election traffic is signed, and throttling it could cost a leader), and the
metrics endpoint (its own port, not this application).

Every limited answer carries `X-RateLimit-Limit` (the bucket size), `X-RateLimit-Remaining`
(whole tokens left) and `X-RateLimit-Reset` (seconds until the bucket is full again); a
refused request is a 429 with `Retry-After` (seconds until the next token).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from jobnode.api.access import principal_of
from jobnode.api.appkeys import RATE_LIMITER
from jobnode.core.errors import Forbidden, RateLimited, Unauthorized
from jobnode.services.rate_limiter import Decision, RateLimiter

EXEMPT_PATHS = frozenset({"/health"})
EXEMPT_PREFIXES = ("/internal/",)
MAX_CLIENT_KEY_CHARS = 128

DECISION_KEY = web.RequestKey("rate_limit_decision", Decision)


def decision_headers(decision: Decision) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(math.ceil(decision.reset_s)),
    }


def address_key(request: web.Request) -> str:
    """The bucket of the connection's address, whoever the request claims to be."""
    return "ip:" + _bounded(request.remote or "unknown")


def client_key(request: web.Request) -> str:
    """Whose bucket a request spends from: `user:<subject>` when authenticated, else `ip:<address>`."""
    principal = principal_of(request)
    if principal is not None:
        return "user:" + _bounded(principal.subject)
    return address_key(request)


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
        raise _limited(limiter, decision)
    return await handler(request)


@web.middleware
async def refusal_limit_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Spend a token of the caller's address for every 401 or 403; an empty bucket turns it into a 429."""
    try:
        return await handler(request)
    except (Unauthorized, Forbidden):
        limiter = request.app.get(RATE_LIMITER)
        if limiter is None:
            raise
        decision = await limiter.check(address_key(request))
        if decision is None or decision.allowed:
            raise
        request[DECISION_KEY] = decision
        raise _limited(limiter, decision) from None


def _limited(limiter: RateLimiter, decision: Decision) -> RateLimited:
    return RateLimited(
        f"rate limit of {limiter.rate_per_min} requests per minute exceeded; retry in "
        f"{math.ceil(decision.retry_after_s)}s",
        retry_after_s=decision.retry_after_s,
        details={"limit_per_min": limiter.rate_per_min, "burst": limiter.capacity},
    )


async def add_rate_limit_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer to a limited request says where its client stands,
    errors included (they are built by error_middleware, after this request's token was spent)."""
    decision = request.get(DECISION_KEY)
    if decision is not None:
        response.headers.update(decision_headers(decision))


def enable(app: web.Application, auth_middleware: object) -> None:
    """Put the middlewares and the headers on an app; the wiring supplies the limiter under RATE_LIMITER.

    The refusal counter goes just outside `auth_middleware`, so it sees the refusals auth raises.
    """
    app.middlewares.insert(list(app.middlewares).index(auth_middleware), refusal_limit_middleware)
    app.middlewares.append(rate_limit_middleware)
    app.on_response_prepare.append(add_rate_limit_headers)
