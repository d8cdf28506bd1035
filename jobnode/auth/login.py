"""Logging in and checking bearer tokens: the auth logic the HTTP layer calls."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import structlog

from jobnode.auth.passwords import PasswordHasher
from jobnode.auth.roles import Principal
from jobnode.auth.throttle import LoginThrottle
from jobnode.auth.tokens import IssuedToken, InvalidToken, TokenSigner, user_generation
from jobnode.auth.users import UserDirectory
from jobnode.core.errors import Unauthorized

log = structlog.get_logger(__name__)

# One message for an unknown user and a wrong password: the answer must not tell them apart.
BAD_CREDENTIALS = "wrong username or password"


class MissingToken(Unauthorized):
    """A protected route called without `Authorization: Bearer <token>`."""


@dataclass
class Authenticator:
    """Exchanges credentials for tokens, and tokens for principals."""

    signer: TokenSigner
    users: UserDirectory
    throttle: LoginThrottle
    hasher: PasswordHasher

    async def login(self, username: str, password: str, client: str) -> IssuedToken:
        await self.throttle.check(username, client)
        user = await self.users.find(username)
        # An unknown name is checked against a decoy hash, so both failures take as long.
        ok = await self.hasher.verify(password, user.password_hash if user else None)
        if user is None or not ok:
            await self.throttle.failed(username, client)
            # An unknown name is often a password typed into the wrong field: log only a digest of it.
            digest = hashlib.sha256(username.encode()).hexdigest()[:12]
            who = {"username": user.name} if user else {"unknown_user": digest}
            log.warning("auth.login_failed", client=client, **who)
            raise Unauthorized(BAD_CREDENTIALS)
        await self.throttle.succeeded(username, client)
        log.info("auth.login", username=user.name, role=user.role, client=client)
        return self.signer.issue(user.name, user.role, user_generation(user.name, user.role, user.password_hash))

    async def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an `Authorization` header value; Unauthorized when it has none or a bad one.

        A token that names its user's generation is accepted only while that user exists with the
        same role and password: removing a user, or changing either, cuts its tokens off at once.
        """
        if not authorization:
            raise MissingToken("this route needs a bearer token: log in at POST /auth/login")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("the Authorization header must be `Bearer <token>`")
        verified = self.signer.verify_token(token.strip())
        if verified.generation is not None:
            user = await self.users.find(verified.principal.subject)
            if user is None or user_generation(user.name, user.role, user.password_hash) != verified.generation:
                raise InvalidToken("bearer token belongs to a user that was removed or changed; log in again")
        return verified.principal
