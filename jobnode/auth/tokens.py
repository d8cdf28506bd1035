"""JSON Web Tokens (HS256, pyjwt): issuing them at login and checking them on every request.

A token carries `sub` (user name), `role`, `iat`, `nbf`, `exp`, `iss` and a random `jti`;
its header names the key (`kid`, derived from JWT_SECRET without revealing it) so a
token signed with another secret is refused by name, and a future key rotation can
accept two keys. Only HS256 is accepted: `none` and every other algorithm are refused
before the signature is looked at. A changed claim (a user raising their own role)
breaks the signature.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import jwt

from jobnode.auth.roles import ROLES, Principal
from jobnode.errors import Unauthorized

ALGORITHM = "HS256"
ISSUER = "jobnode"
# Nodes' clocks differ a little; a token minted on one must work on the others at once.
CLOCK_LEEWAY_S = 5.0
REQUIRED_CLAIMS = ["sub", "role", "iat", "nbf", "exp", "iss"]
MAX_TOKEN_CHARS = 4096


class InvalidToken(Unauthorized):
    """A bearer token that is malformed, expired, not yet valid, or not signed by this cluster."""


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in_s: int
    role: str


def key_id(secret: str) -> str:
    """A short public name for a signing secret (a hash of it: the secret cannot be derived)."""
    return hashlib.sha256(b"jobnode-jwt-key-id\x00" + secret.encode()).hexdigest()[:16]


class TokenSigner:
    """Issues and verifies this cluster's tokens with JWT_SECRET."""

    def __init__(self, secret: str, ttl_s: float) -> None:
        self._secret = secret
        self.ttl_s = int(ttl_s)
        self.key_id = key_id(secret)

    def __repr__(self) -> str:  # never show the secret, even in a debugger or a traceback
        return f"TokenSigner(key_id={self.key_id!r}, ttl_s={self.ttl_s})"

    def issue(self, subject: str, role: str) -> IssuedToken:
        now = int(time.time())
        claims = {"sub": subject, "role": role, "iat": now, "nbf": now, "exp": now + self.ttl_s,
                  "iss": ISSUER, "jti": secrets.token_hex(8)}
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM, headers={"kid": self.key_id})
        return IssuedToken(token=token, expires_in_s=self.ttl_s, role=role)

    def verify(self, token: str) -> Principal:
        """The principal the token speaks for; InvalidToken (never echoing the token) otherwise."""
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("bearer token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise InvalidToken("bearer token is not a JWT") from None
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(f"bearer token must be signed with {ALGORITHM}")
        if header.get("kid") != self.key_id:
            raise InvalidToken("bearer token was signed with a key this cluster does not use")
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], issuer=ISSUER, leeway=CLOCK_LEEWAY_S,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("bearer token has expired; log in again") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("bearer token is not valid yet") from None
        except jwt.InvalidTokenError:
            raise InvalidToken("bearer token is not valid") from None
        subject, role = claims.get("sub"), claims.get("role")
        if not isinstance(subject, str) or not subject or role not in ROLES:
            raise InvalidToken("bearer token is not valid")
        return Principal(subject=subject, role=role)

