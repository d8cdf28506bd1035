"""Joining through SEEDS: back-off towards seeds that do not answer, and the `seeds` health check.

The election machines ask their seeds for admission again every election timeout or probe
round. Against a seed that is down that would be a connection attempt several times a second,
forever; so until a seed has answered once, the transport asks `may_send` first and a seed that
failed waits out a back-off: 0.5 s doubling up to SEED_RETRY_MAX, each wait drawn between half
and all of that (jitter, so nodes started together do not knock in step). A seed that answers
leaves back-off for good: from then on it is a member like any other, and the election's own
timers pace it.

Pure but for the caller's clock: every method takes `now` (loop seconds).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FIRST_RETRY_S = 0.5


@dataclass
class _Seed:
    failures: int = 0
    next_attempt: float = float("-inf")
    answered: bool = False
    last_error: str | None = None


class SeedContact:
    """What this node knows about reaching its seeds."""

    def __init__(self, seeds: tuple[str, ...], retry_max_s: float, rng: random.Random) -> None:
        self._seeds = {seed.rstrip("/"): _Seed() for seed in seeds}
        self._retry_max_s = retry_max_s
        self._rng = rng
        self.attempts = 0

    @property
    def configured(self) -> bool:
        return bool(self._seeds)

    def may_send(self, address: str, now: float) -> bool:
        """False while `address` is a seed that never answered and is waiting out its back-off."""
        seed = self._seeds.get(address.rstrip("/"))
        if seed is None or seed.answered:
            return True
        if now < seed.next_attempt:
            return False
        self.attempts += 1
        # One attempt per back-off window: the next one waits until this one failed.
        seed.next_attempt = float("inf")
        return True

    def reached(self, address: str, now: float) -> None:
        seed = self._seeds.get(address.rstrip("/"))
        if seed is not None:
            seed.answered, seed.failures, seed.last_error = True, 0, None

    def failed(self, address: str, now: float, reason: str) -> None:
        seed = self._seeds.get(address.rstrip("/"))
        if seed is None or seed.answered:
            return
        seed.failures += 1
        seed.last_error = reason
        ceiling = min(self._retry_max_s, FIRST_RETRY_S * 2 ** (seed.failures - 1))
        seed.next_attempt = now + ceiling * (0.5 + 0.5 * self._rng.random())

    def report(self, joined: bool, now: float) -> dict[str, object]:
        """The `seeds` check of /health: ok without seeds, or once this node has been in the cluster
        (`joined`: the elector keeps it true from then on, so a survivor whose peers all died stays
        ready; losing a quorum is not this check's business).

        Seed URLs are left out (the health route is public); the count, the last error and the
        wait until the next attempt say why a node is not in yet.
        """
        answered = sum(1 for s in self._seeds.values() if s.answered)
        check: dict[str, object] = {"ok": joined or not self._seeds, "configured": len(self._seeds),
                                    "answered": answered, "joined": joined}
        if check["ok"]:
            return check
        waiting = [s.next_attempt - now for s in self._seeds.values() if s.next_attempt != float("inf")]
        errors = [s.last_error for s in self._seeds.values() if s.last_error]
        if answered:
            check["reason"] = "a seed answered; waiting to be admitted to the cluster"
        else:
            check["reason"] = (f"none of the {len(self._seeds)} seeds answered yet; retrying with back-off"
                               + (f" (last error: {errors[-1]})" if errors else ""))
        check["attempts"] = self.attempts
        if waiting:
            check["next_attempt_in_s"] = round(max(0.0, min(waiting)), 2)
        return check
