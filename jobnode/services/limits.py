"""The limits service: read and change the cluster's flow limits (see jobnode.core.flow_limits).

Limits live in Redis, next to the queue they gate, so every node and the leader's dispatch
see one set. FLOW_LIMITS is the declared baseline: a node writes its configured limits at
start (over whatever a PUT left for the same scope and name); limits set at runtime and not
named in the configuration stay until deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobnode.core.errors import NotFound
from jobnode.core.flow_limits import FlowLimit, check_target, parse_limit_body
from jobnode.storage.redis.flow_limits import FlowLimitStore


class LimitService:
    def __init__(self, store: FlowLimitStore, configured: Sequence[FlowLimit] = ()) -> None:
        self.store = store
        self.configured = tuple(configured)

    async def apply_configured(self) -> None:
        for limit in self.configured:
            await self.store.put(limit)

    async def list(self) -> list[dict[str, Any]]:
        limits = await self.store.all()
        usage = await self.store.usage([limit.key for limit in limits])
        return [limit.to_json(running=usage[limit.key][0], waiting=usage[limit.key][1]) for limit in limits]

    async def get(self, scope: str, name: str) -> dict[str, Any]:
        limit = await self._existing(scope, name)
        running, waiting = (await self.store.usage([limit.key]))[limit.key]
        return limit.to_json(running=running, waiting=waiting)

    async def put(self, scope: str, name: str, body: Any) -> dict[str, Any]:
        check_target(scope, name)
        current = await self.store.get(f"{scope}:{name}")
        limit = parse_limit_body(scope, name, body, paused=current.paused if current else False)
        await self.store.put(limit)
        return await self.get(scope, name)

    async def delete(self, scope: str, name: str) -> None:
        """Remove the limit; removing one that is not there is not an error (the outcome is the same)."""
        check_target(scope, name)
        await self.store.delete(f"{scope}:{name}")

    async def set_paused(self, scope: str, name: str, paused: bool) -> dict[str, Any]:
        """Pause or resume; pausing a scope and name without a limit creates one that only pauses."""
        check_target(scope, name)
        current = await self.store.get(f"{scope}:{name}") or FlowLimit(scope, name)
        await self.store.put(FlowLimit(scope, name, current.rate, current.concurrency, paused))
        return await self.get(scope, name)

    async def waiting(self) -> list[dict[str, Any]]:
        """The limits that hold jobs back now, for the stats: scope, name, waiting, running."""
        return [{key: row[key] for key in ("scope", "name", "waiting", "running", "paused")}
                for row in await self.list() if row["waiting"]]

    async def _existing(self, scope: str, name: str) -> FlowLimit:
        check_target(scope, name)
        limit = await self.store.get(f"{scope}:{name}")
        if limit is None:
            raise NotFound(f"no limit on {scope} {name!r}")
        return limit
