"""Signing and checking peer-to-peer requests with the shared CLUSTER_SECRET.

A signature is an HMAC-SHA256 over the method, path, sender, timestamp and body, so a
message cannot be forged, altered, or replayed to another route. Replays of the same
request are refused within the freshness window, and anything older than it is refused
outright. The window compares the sender's clock with ours, which is the one place
jobnode does so; it is generous (NTP-synchronised hosts differ by milliseconds) and it
only guards against replay: nothing about leases or timeouts depends on it.
"""

from __future__ import annotations

import hashlib
import math
import hmac
from collections import OrderedDict

from jobnode.core.errors import Unauthorized

NODE_HEADER = "X-Jobnode-Node"
TIME_HEADER = "X-Jobnode-Timestamp"
SIGNATURE_HEADER = "X-Jobnode-Signature"
FRESHNESS_S = 30.0
MAX_REMEMBERED = 50_000


def _mac(secret: bytes, method: str, path: str, sender: str, timestamp: str, body: bytes) -> str:
    head = f"{method.upper()}\n{path}\n{sender}\n{timestamp}\n".encode()
    return hmac.new(secret, head + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, method: str, path: str, sender: str, body: bytes, now_s: float) -> dict[str, str]:
    """The headers that authenticate one request from `sender`."""
    timestamp = f"{now_s:.3f}"
    return {
        NODE_HEADER: sender,
        TIME_HEADER: timestamp,
        SIGNATURE_HEADER: _mac(secret, method, path, sender, timestamp, body),
    }


# Why a peer request was refused: the label values of jobnode_peer_messages_refused_total.
# The last two are the cluster service's checks of who sent a signed message.
REFUSAL_REASONS = ("unsigned", "malformed_timestamp", "stale", "bad_signature", "replay", "certificate_mismatch",
                   "sender_mismatch")


class PeerRefused(Unauthorized):
    """A peer request that fails the signature check, with the reason as a short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Verifier:
    """Checks signed peer requests and remembers recent signatures to refuse replays."""

    def __init__(self, secret: bytes, freshness_s: float = FRESHNESS_S) -> None:
        self._secret = secret
        self._freshness_s = freshness_s
        self._seen: OrderedDict[str, float] = OrderedDict()
        self.refused_by_reason = dict.fromkeys(REFUSAL_REASONS, 0)

    @property
    def refused(self) -> int:
        return sum(self.refused_by_reason.values())

    def count_refusal(self, reason: str) -> None:
        """Count a refusal decided after the signature checked out (see REFUSAL_REASONS)."""
        self.refused_by_reason[reason] += 1

    def check(self, method: str, path: str, headers: dict[str, str] | object, body: bytes, now_s: float) -> str:
        """Returns the sender's node id; raises Unauthorized (and counts it) otherwise."""
        try:
            return self._check(method, path, headers, body, now_s)
        except PeerRefused as exc:
            self.refused_by_reason[exc.reason] += 1
            raise

    def _check(self, method: str, path: str, headers: object, body: bytes, now_s: float) -> str:
        get = headers.get  # type: ignore[attr-defined]
        sender, timestamp, signature = get(NODE_HEADER), get(TIME_HEADER), get(SIGNATURE_HEADER)
        if not (sender and timestamp and signature):
            raise PeerRefused("unsigned", "peer request is not signed with the cluster secret")
        try:
            sent_s = float(timestamp)
        except ValueError:
            raise PeerRefused("malformed_timestamp", "peer request has a malformed timestamp") from None
        if not math.isfinite(sent_s):  # NaN would pass any window comparison
            raise PeerRefused("malformed_timestamp", "peer request has a malformed timestamp")
        if abs(now_s - sent_s) > self._freshness_s:
            raise PeerRefused("stale", "peer request is outside the freshness window (check the hosts' clocks)")
        expected = _mac(self._secret, method, path, sender, timestamp, body)
        if not hmac.compare_digest(expected, signature):
            raise PeerRefused("bad_signature", "peer request signature does not match the cluster secret")
        if signature in self._seen:
            raise PeerRefused("replay", "peer request was already received (replay)")
        self._remember(signature, now_s)
        return sender

    def _remember(self, signature: str, now_s: float) -> None:
        self._seen[signature] = now_s
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now_s - at <= self._freshness_s and len(self._seen) <= MAX_REMEMBERED:
                break
            self._seen.pop(oldest)
