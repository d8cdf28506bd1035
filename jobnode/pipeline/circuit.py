"""A circuit breaker for writes to a server that is failing slowly: refuse at once instead of piling up.

Pure state fed `now` (seconds on any monotonic clock). After a failed write (the caller
decides which failures count: a slow one, see JobService._write_batch) the circuit
opens for `open_s`; each further failure right after it reopened doubles that, up to
`max_open_s`. While open, callers are refused at once (the API answers 503 with
Retry-After) instead of each one waiting out the server's timeout, which during an outage
would hold a socket and a request per client and, when the server comes back, land all
of them on it together. Once the open time has passed, writes go through again; the
first success closes the circuit and forgets the failures.
"""

from __future__ import annotations


class Circuit:
    """Closed (writes pass), or open until `open_until` after failures."""

    def __init__(self, open_s: float = 1.0, max_open_s: float = 8.0) -> None:
        self.open_s, self.max_open_s = open_s, max_open_s
        self.failures = 0
        self.open_until = 0.0
        self.last_error = ""

    def refuse_for(self, now: float) -> float:
        """Seconds until writes may go again (0: they may now)."""
        return max(0.0, self.open_until - now)

    def failed(self, now: float, error: str) -> None:
        if self.refuse_for(now) > 0:
            return  # a batch that was in flight when the circuit opened: no new information
        self.failures += 1
        self.open_until = now + min(self.max_open_s, self.open_s * 2 ** min(self.failures - 1, 16))
        self.last_error = error

    def succeeded(self) -> None:
        self.failures, self.open_until, self.last_error = 0, 0.0, ""
