"""The cluster's durable state in MongoDB: nodes, the leader-change history, metric snapshots.

  nodes      one document per node (its own id as _id), rewritten by that node every few
             seconds: address, algorithm, role, term, leader, workers, last heartbeat.
  elections  one document per leader change, written by the node that became leader.
             Index {at desc}: the history is read newest first.
  metrics    a periodic snapshot of each node's counters, one a minute per node. Index {at};
             the leader's retention sweep deletes those older than a week, so the
             collection never grows without bound.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from jobnode.storage.mongo.boundary import mongo_boundary
from jobnode.storage.mongo.indexes import drop_replaced

METRICS_TTL_S = 7 * 24 * 3600


class ClusterStore:
    """Reads and writes the nodes, elections and metrics collections."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.nodes = db["nodes"]
        self.elections = db["elections"]
        self.metrics = db["metrics"]

    @mongo_boundary
    async def ensure_indexes(self) -> None:
        await self.elections.create_indexes([IndexModel([("at", DESCENDING)], name="at")])
        # A plain index, and the leader's retention sweep deletes old snapshots
        # (`delete_old_metrics`): SecantusDB's TTL monitor would read the whole collection
        # under its storage lock every minute (jobnode.pipeline.retention says why).
        existing = await self.metrics.index_information()
        await self.metrics.create_indexes([IndexModel([("at", DESCENDING)], name="at")])
        await drop_replaced(self.metrics, ["at_ttl"], existing)

    @mongo_boundary
    async def delete_old_metrics(self, now: datetime) -> int:
        """Delete the metrics snapshots older than METRICS_TTL_S; how many (a range of `at`)."""
        cutoff = now - timedelta(seconds=METRICS_TTL_S)
        return (await self.metrics.delete_many({"at": {"$lt": cutoff}})).deleted_count

    @mongo_boundary
    async def heartbeat(self, node_id: str, fields: dict[str, Any]) -> None:
        await self.nodes.update_one({"_id": node_id}, {"$set": fields}, upsert=True)

    @mongo_boundary
    async def all_nodes(self) -> list[dict[str, Any]]:
        return [doc async for doc in self.nodes.find().sort("_id")]

    @mongo_boundary
    async def record_leader_change(self, doc: dict[str, Any]) -> None:
        await self.elections.insert_one(doc)

    @mongo_boundary
    async def leader_changes(self, *, limit: int, before: datetime | None = None) -> list[dict[str, Any]]:
        query = {"at": {"$lt": before}} if before else {}
        found = self.elections.find(query, {"_id": 0}).sort("at", DESCENDING).limit(limit)
        return [doc async for doc in found]

    @mongo_boundary
    async def snapshot(self, doc: dict[str, Any]) -> None:
        await self.metrics.insert_one(doc)
