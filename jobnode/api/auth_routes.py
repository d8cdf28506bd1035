"""POST /auth/login, and the node's auth resources (signer, users, throttle) started with the app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from jobnode.api.access import access
from jobnode.api.appkeys import AUTHENTICATOR, MONGO, REDIS, SETTINGS
from jobnode.api.bodies import read_json
from jobnode.auth.login import Authenticator
from jobnode.auth.passwords import MAX_PASSWORD_BYTES, PasswordHasher
from jobnode.auth.roles import PUBLIC
from jobnode.auth.throttle import LoginThrottle
from jobnode.auth.tokens import TokenSigner
from jobnode.auth.users import UserCollection, UserDirectory, UsersFile, UsersFileError
from jobnode.core.errors import JobnodeError, NotFound, ValidationError

log = structlog.get_logger(__name__)

routes = web.RouteTableDef()

MAX_USERNAME_CHARS = 256  # longer than any valid name (64), so a near miss still gets the usual 401


class AuthSetupError(JobnodeError):
    """Auth is on but its users cannot be loaded; the node must not start."""


@routes.post("/auth/login")
@access(PUBLIC)
async def login(request: web.Request) -> web.Response:
    if AUTHENTICATOR not in request.app:
        raise NotFound("authentication is off on this node (AUTH_ENABLED=false): no token is needed")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ValidationError("body", 'must be a JSON object {"username": ..., "password": ...}')
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not 1 <= len(username) <= MAX_USERNAME_CHARS:
        raise ValidationError("username", f"must be a string of 1 to {MAX_USERNAME_CHARS} characters")
    if not isinstance(password, str) or not password or len(password.encode()) > MAX_PASSWORD_BYTES:
        raise ValidationError("password", f"must be a non-empty string of at most {MAX_PASSWORD_BYTES} bytes")
    issued = await request.app[AUTHENTICATOR].login(username, password, request.remote or "unknown")
    body = {"access_token": issued.token, "token_type": "bearer", "expires_in": issued.expires_in_s,
            "role": issued.role}
    # A token must not end up in a shared cache.
    return web.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def auth_resources(app: web.Application) -> AsyncIterator[None]:
    """With AUTH_ENABLED: load the users, bootstrap the admin, and make the authenticator."""
    settings = app[SETTINGS]
    if not settings.auth_enabled:
        yield
        return
    assert settings.jwt_secret is not None  # Settings refuses AUTH_ENABLED without a good one
    hasher = PasswordHasher()
    users_file = UsersFile(settings.users_file) if settings.users_file else None
    collection = UserCollection(app[MONGO][settings.mongodb_database])
    try:
        if users_file is not None:
            users_file.load()
    except UsersFileError as exc:
        raise AuthSetupError(f"USERS_FILE: {exc.message}") from None
    if settings.admin_username and settings.admin_password:
        outcome = await collection.bootstrap_admin(settings.admin_username, settings.admin_password, hasher)
        log.info("auth.admin_bootstrap", username=settings.admin_username, outcome=outcome)
    elif users_file is None and not await collection.any():
        raise AuthSetupError("AUTH_ENABLED=true but nobody could log in: set USERS_FILE (see `jobnode user add`) "
                             "or ADMIN_USERNAME and ADMIN_PASSWORD")
    app[AUTHENTICATOR] = Authenticator(
        signer=TokenSigner(settings.jwt_secret, settings.jwt_ttl_s),
        users=UserDirectory(users_file, collection),
        throttle=LoginThrottle(app[REDIS], settings.redis_key_prefix),
        hasher=hasher,
    )
    yield
