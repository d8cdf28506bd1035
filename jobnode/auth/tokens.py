"""JSON Web Tokens (HS256, pyjwt): issuing them at login and checking them on every request.

A token carries `sub` (user name), `role`, `iat`, `nbf`, `exp`, `iss`, a random `jti` and the
user's generation `gen` (see `user_generation`: a removed user, or a changed role or password,
makes the user's outstanding tokens useless at their next request);
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
from jobnode.core.errors import Unauthorized

ALGORITHM = "HS256"
ISSUER = "jobnode"
# Nodes' clocks differ a little; a token minted on one must work on the others at once.
CLOCK_LEEWAY_S = 5.0
REQUIRED_CLAIMS = ["sub", "role", "iat", "nbf", "exp", "iss"]
MAX_TOKEN_CHARS = 4096
# Checking a signature with pyjwt costs ~100 us; a client sends the same token on every request,
# so tokens that passed are remembered (with their validity window, still checked each time).
VERIFIED_CACHE_SIZE = 4096
# No token is accepted for longer than this after it was issued, whatever JWT_TTL said then.
MAX_TOKEN_LIFETIME_S = 86400


class InvalidToken(Unauthorized):
    """A bearer token that is malformed, expired, not yet valid, or not signed by this cluster."""


@dataclass(frozen=True)
class VerifiedToken:
    """What a valid token says: who, and the generation of the user it was issued to (None in
    tokens minted without one)."""

    principal: Principal
    generation: str | None


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in_s: int
    role: str


def user_generation(name: str, role: str, password_hash: str) -> str:
    """A short digest that changes whenever the user's role or password does (and is gone with the user)."""
    return hashlib.sha256(f"{name}\x00{role}\x00{password_hash}".encode()).hexdigest()[:16]


def key_id(secret: str) -> str:
    """A short public name for a signing secret (a hash of it: the secret cannot be derived)."""
    return hashlib.sha256(b"jobnode-jwt-key-id\x00" + secret.encode()).hexdigest()[:16]


class TokenSigner:
    """Issues and verifies this cluster's tokens with JWT_SECRET."""

    def __init__(self, secret: str, ttl_s: float) -> None:
        self._secret = secret
        self.ttl_s = int(ttl_s)
        self.key_id = key_id(secret)
        self._verified: dict[str, tuple[VerifiedToken, float, float]] = {}

    def __repr__(self) -> str:  # never show the secret, even in a debugger or a traceback
        return f"TokenSigner(key_id={self.key_id!r}, ttl_s={self.ttl_s})"

    def issue(self, subject: str, role: str, generation: str | None = None) -> IssuedToken:
        now = int(time.time())
        claims: dict[str, object] = {"sub": subject, "role": role, "iat": now, "nbf": now, "exp": now + self.ttl_s,
                                     "iss": ISSUER, "jti": secrets.token_hex(8)}
        if generation is not None:
            claims["gen"] = generation
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM, headers={"kid": self.key_id})
        return IssuedToken(token=token, expires_in_s=self.ttl_s, role=role)

    def verify(self, token: str) -> Principal:
        """The principal the token speaks for; InvalidToken (never echoing the token) otherwise."""
        return self.verify_token(token).principal

    def verify_token(self, token: str) -> VerifiedToken:
        """`verify`, with the user generation the token carries."""
        known = self._verified.get(token)
        if known is not None:
            verified, not_before, expires = known
            now = time.time()
            if not_before - CLOCK_LEEWAY_S <= now <= expires + CLOCK_LEEWAY_S:
                return verified
            del self._verified[token]  # expired now: the full check below says so
        verified, not_before, expires = self._check(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()  # crude but bounded; refilling costs one full check per live token
        self._verified[token] = (verified, not_before, expires)
        return verified

    def _check(self, token: str) -> tuple[VerifiedToken, float, float]:
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
            # Times are checked below against the same clock the cache uses, not by pyjwt.
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={"require": REQUIRED_CLAIMS, "verify_exp": False, "verify_nbf": False,
                                         "verify_iat": False})
        except jwt.InvalidTokenError:
            raise InvalidToken("bearer token is not valid") from None
        subject, role, generation = claims.get("sub"), claims.get("role"), claims.get("gen")
        times = [claims.get(name) for name in ("iat", "nbf", "exp")]
        if not isinstance(subject, str) or not subject or role not in ROLES or not all(_is_time(t) for t in times):
            raise InvalidToken("bearer token is not valid")
        if generation is not None and not isinstance(generation, str):
            raise InvalidToken("bearer token is not valid")
        issued_at, not_before, expires = (float(t) for t in times)
        if expires - issued_at > MAX_TOKEN_LIFETIME_S:
            raise InvalidToken("bearer token lives longer than this cluster accepts; log in again")
        now = time.time()
        if expires + CLOCK_LEEWAY_S < now:
            raise InvalidToken("bearer token has expired; log in again")
        if max(issued_at, not_before) - CLOCK_LEEWAY_S > now:
            raise InvalidToken("bearer token is not valid yet")
        return VerifiedToken(Principal(subject=subject, role=role), generation), not_before, expires


def _is_time(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)

