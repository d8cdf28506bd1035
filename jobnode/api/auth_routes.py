"""POST /auth/login: credentials in, a bearer token out."""

from __future__ import annotations

from aiohttp import web

from jobnode.api.access import access
from jobnode.api.appkeys import AUTHENTICATOR
from jobnode.api.bodies import read_json
from jobnode.auth.passwords import MAX_PASSWORD_BYTES
from jobnode.auth.roles import PUBLIC
from jobnode.core.errors import NotFound, ValidationError

routes = web.RouteTableDef()

MAX_USERNAME_CHARS = 256  # longer than any valid name (64), so a near miss still gets the usual 401


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
