"""The job types of the whole cluster, as this node sees them: for checking submissions and for `/api/v1/types`.

Each node publishes its own types and queues in Redis (jobnode.storage.redis.catalog) and
reads everyone's, at most once per CATALOG_MAX_AGE_S while submissions arrive, so a node
accepts and checks jobs of types it does not run itself, with the schema the nodes that
run them published.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

import orjson
import structlog

from jobnode.core.errors import InvalidPayload, UnknownQueue, Unavailable
from jobnode.core.job import DEFAULT_QUEUE, STORE, JobSpec
from jobnode.core.job_types import TypeSpec
from jobnode.core.schemas import FieldProblem, PayloadCheck
from jobnode.storage.redis.catalog import CatalogStore
from jobnode.storage.redis.queue import JobQueue

log = structlog.get_logger(__name__)

CATALOG_MAX_AGE_S = 1.0
REPUBLISH_INTERVAL_S = 10.0


class TypeCatalog:
    """The cluster's types and queues, cached; `admit` checks submissions against them."""

    def __init__(self, store: CatalogStore, queue: JobQueue, node_id: str, local: Sequence[TypeSpec],
                 local_queues: Sequence[str], *, default_durability: str = STORE) -> None:
        self.store = store
        self.queue = queue
        self.node_id = node_id
        self.local = {spec.type: spec for spec in local}
        self.local_queues = list(local_queues)
        self.default_durability = default_durability
        self._types: dict[str, TypeSpec] = dict(self.local)
        self._queues: set[str] = set(self.local_queues)
        self._read_at = -CATALOG_MAX_AGE_S
        self._checks: dict[bytes, PayloadCheck] = {}
        self._refreshing: asyncio.Task[None] | None = None

    async def publish(self, *, replace: bool) -> None:
        await self.store.publish(self.node_id, list(self.local.values()), self.local_queues, replace=replace)

    async def run(self) -> None:
        """Keep this node's types declared (a Redis that lost them gets them back)."""
        while True:
            await asyncio.sleep(REPUBLISH_INTERVAL_S)
            try:
                await self.publish(replace=False)
            except Unavailable as exc:
                log.warning("catalog.publish_failed", error=str(exc))

    @property
    def known_types(self) -> set[str]:
        return set(self._types)

    @property
    def known_queues(self) -> set[str]:
        return self._queues | {spec.queue for spec in self._types.values()}

    def spec(self, type_name: str) -> TypeSpec | None:
        return self._types.get(type_name)

    async def refresh(self, *, max_age_s: float = CATALOG_MAX_AGE_S) -> None:
        """Read the cluster's types again if the cached ones are older than `max_age_s`."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._read_at < max_age_s:
            return
        if self._refreshing is None or self._refreshing.done():  # one read for every waiting request
            self._refreshing = asyncio.create_task(self._read())
        await asyncio.shield(self._refreshing)

    async def _read(self) -> None:
        try:
            types, queues = await self.store.read()
        except Unavailable as exc:  # the cached view (at least this node's own types) still serves
            log.warning("catalog.read_failed", error=str(exc))
            return
        # This node's own types as it runs them; the others as the cluster last declared them.
        self._types = {**types, **self.local}
        self._queues = queues | set(self.local_queues)
        self._read_at = asyncio.get_running_loop().time()

    def admit(self, specs: Sequence[JobSpec], fields: Sequence[str]) -> list[JobSpec]:
        """Give each job its queue and durability, and check it; raises one ValidationError naming every bad field.

        Durability: the submission's, else its type's, else the node's default; a job with an
        idempotency key is always STORE (its key is checked by the store's unique index).

        `fields` holds each job's field prefix ("" for a single job, "jobs[3]." in a batch).
        """
        problems: list[FieldProblem] = []
        admitted = []
        for spec, prefix in zip(specs, fields):
            declared = self._types.get(spec.type)
            queue = spec.queue or (declared.queue if declared else None) or DEFAULT_QUEUE
            if queue not in self.known_queues:
                served = sorted(self.known_queues)
                raise UnknownQueue(prefix + "queue", f"unknown queue {queue!r}; queues served: {', '.join(served)}",
                                      details={"queues": served})
            if declared is not None and declared.schema is not None:
                problems += self._check(declared.schema).problems(spec.payload, prefix + "payload")
            durability = spec.durability or (declared.durability if declared else None) or self.default_durability
            if spec.idempotency_key is not None:
                durability = STORE
            admitted.append(dataclasses.replace(spec, queue=queue, durability=durability))
        if problems:
            listed = "; ".join(f"{p.field}: {p.message}" for p in problems[:20])
            raise InvalidPayload(problems[0].field, f"the payload does not match its type's schema: {listed}",
                                  details={"errors": [p.to_json() for p in problems]})
        return admitted

    def _check(self, schema: dict[str, Any]) -> PayloadCheck:
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
        check = self._checks.get(key)
        if check is None:
            check = self._checks[key] = PayloadCheck(schema)
        return check

    async def describe(self) -> list[dict[str, Any]]:
        """Every type in the cluster: its queue, the nodes running it now, its schema and description."""
        await self.refresh(max_age_s=0)
        groups = await self.queue.served()
        rows = []
        for name in sorted(self._types):
            spec = self._types[name]
            nodes = sorted({node for g in groups if g["types"] is None or name in g["types"] for node in g["nodes"]})
            rows.append({**spec.to_json(), "nodes": nodes})
        return rows

    async def unroutable(self) -> list[dict[str, Any]]:
        """Ready jobs that no registered worker can run, by queue and type."""
        return [{"queue": r.queue, "type": r.type, "jobs": r.ready} for r in await self.queue.routes() if not r.routable]
