"""Who may call what: the three roles and the access levels routes declare."""

from __future__ import annotations

from dataclasses import dataclass

ADMIN, USER, WORKER = "admin", "user", "worker"
# admin can do everything a user can; worker is a separate role for machine clients
# (monitors, autoscalers) that read cluster state but never see or change jobs.
ROLES = (ADMIN, USER, WORKER)


@dataclass(frozen=True)
class Principal:
    """The caller a valid token speaks for."""

    subject: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


@dataclass(frozen=True)
class Access:
    """An access level a route declares: which roles may call it (None: anyone, no token needed)."""

    name: str
    roles: frozenset[str] | None

    @property
    def is_public(self) -> bool:
        return self.roles is None

    def allows(self, role: str) -> bool:
        return self.roles is None or role in self.roles


PUBLIC = Access("any", None)
USER_ACCESS = Access(USER, frozenset({USER, ADMIN}))
# Read-only cluster views that machine clients need too (queue depth for autoscaling, say).
MONITOR_ACCESS = Access("user or worker", frozenset({USER, ADMIN, WORKER}))
ADMIN_ACCESS = Access(ADMIN, frozenset({ADMIN}))
# Election traffic between nodes: no JWT, the route checks the CLUSTER_SECRET signature itself.
PEER_ACCESS = Access("peer (CLUSTER_SECRET signature)", None)
