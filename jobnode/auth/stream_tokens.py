"""Short-lived stream tokens: how a browser's EventSource, which cannot send headers, subscribes.

An authenticated client asks `POST /api/v1/events/token` for one and opens the stream with
`?access_token=<token>`. A stream token is a JWT like a login token, with the caller's own
subject and role, but it lives STREAM_TOKEN_TTL_S and is signed with a key derived from
JWT_SECRET for this one purpose. Its key id therefore differs from the login tokens', so:
- it opens only the event stream routes: every other route checks bearer tokens with the
  login key and refuses it ("signed with a key this cluster does not use");
- a login token put in a URL is refused by the stream routes, so long-lived tokens never
  have a reason to appear in URLs, logs or browser history.
A connection already open outlives its token: the token is checked once, when it opens.
"""

from __future__ import annotations

import hashlib
import hmac

from jobnode.auth.roles import Principal
from jobnode.auth.tokens import IssuedToken, TokenSigner

STREAM_TOKEN_TTL_S = 60
QUERY_PARAMETER = "access_token"


def _stream_key(jwt_secret: str) -> str:
    return hmac.new(jwt_secret.encode(), b"jobnode event stream tokens", hashlib.sha256).hexdigest()


class StreamTokens:
    """Issues and checks stream tokens for one cluster (from its JWT_SECRET)."""

    def __init__(self, jwt_secret: str, ttl_s: float = STREAM_TOKEN_TTL_S) -> None:
        self._signer = TokenSigner(_stream_key(jwt_secret), ttl_s)

    def __repr__(self) -> str:
        return f"StreamTokens(key_id={self._signer.key_id!r})"

    def issue(self, principal: Principal) -> IssuedToken:
        return self._signer.issue(principal.subject, principal.role)

    def verify(self, token: str) -> Principal:
        """The principal the token speaks for; InvalidToken when it is not a valid stream token."""
        return self._signer.verify(token)
