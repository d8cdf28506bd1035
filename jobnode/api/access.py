"""Who may call each route: the `access` decorator routes declare, and the middleware that enforces it.

Every route says its access level next to its definition:

    @routes.get("/api/v1/stats")
    @access(MONITOR_ACCESS)
    async def stats(request): ...

With AUTH_ENABLED=false the middleware lets everything through, as before auth existed.
The event stream routes also declare `accepts_stream_token`: a request to them without an
Authorization header may carry a short-lived stream token in `?access_token=` instead
(jobnode.auth.stream_tokens), for browsers' EventSource, which cannot send headers.
With it on, a route that declares nothing is treated as admin-only (a forgotten
declaration fails closed), public routes ignore the Authorization header, and every
other route needs a valid bearer token (401) whose role the level allows (403).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from aiohttp import web

from jobnode.api.appkeys import AUTHENTICATOR, SETTINGS, STREAM_TOKENS
from jobnode.auth.roles import ADMIN, ADMIN_ACCESS, Access, Principal
from jobnode.auth.stream_tokens import QUERY_PARAMETER
from jobnode.core.errors import Forbidden

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

ACCESS_ATTRIBUTE = "jobnode_access"
STREAM_TOKEN_ATTRIBUTE = "jobnode_accepts_stream_token"
PRINCIPAL = web.RequestKey("principal", Principal)
UNDECLARED = ADMIN_ACCESS


def access(level: Access) -> Callable[[H], H]:
    """Declare which roles may call the decorated route handler."""

    def declare(handler: H) -> H:
        setattr(handler, ACCESS_ATTRIBUTE, level)
        return handler

    return declare


def accepts_stream_token(handler: H) -> H:
    """Let the decorated (event stream) route be opened with a stream token in the query."""
    setattr(handler, STREAM_TOKEN_ATTRIBUTE, True)
    return handler


def access_of(handler: object) -> Access:
    return getattr(handler, ACCESS_ATTRIBUTE, UNDECLARED)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.app[SETTINGS].auth_enabled or request.match_info.http_exception is not None:
        return await handler(request)  # auth off, or no such route (404/405 say nothing about it)
    level = access_of(request.match_info.handler)
    if level.is_public:
        return await handler(request)
    authorization = request.headers.get("Authorization")
    query_token = request.query.get(QUERY_PARAMETER)
    if (not authorization and query_token is not None
            and getattr(request.match_info.handler, STREAM_TOKEN_ATTRIBUTE, False)):
        principal = request.app[STREAM_TOKENS].verify(query_token)
    else:
        principal = await request.app[AUTHENTICATOR].authenticate(authorization)
    if not level.allows(principal.role):
        raise Forbidden(f"{request.method} {request.match_info.route.resource.canonical} needs role {level.name}; "
                        f"this token has role {principal.role}",
                        details={"required": level.name, "role": principal.role})
    request[PRINCIPAL] = principal
    return await handler(request)


def principal_of(request: web.Request) -> Principal | None:
    """The authenticated caller, or None when auth is off."""
    return request.get(PRINCIPAL)


def owner_filter(request: web.Request) -> str | None:
    """The subject whose jobs this caller is limited to: theirs for users, None (all) for admins or auth off."""
    principal = principal_of(request)
    return None if principal is None or principal.is_admin else principal.subject


def require_job_type_roles(request: web.Request, types: Iterable[str]) -> None:
    """Refuse (403) a submission of a job type JOB_TYPE_ROLES reserves for a role above the caller's.

    Only `admin` can be above a caller who got this far (submitting needs `user`). With auth off there
    are no roles, so nothing is refused.
    """
    principal = principal_of(request)
    if principal is None or principal.is_admin:
        return
    reserved = request.app[SETTINGS].job_type_roles
    for type_name in sorted(set(types)):
        if reserved.get(type_name) == ADMIN:
            raise Forbidden(f"jobs of type {type_name!r} may be submitted by role admin only (JOB_TYPE_ROLES); "
                            f"this token has role {principal.role}",
                            details={"type": type_name, "required": ADMIN, "role": principal.role})
