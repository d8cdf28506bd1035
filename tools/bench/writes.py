"""Counting MongoDB writes on the server, whoever made them (the nodes write, not the bench).

Two counts, taken before and after a workload:
  documents  oplog entries (one per document inserted, actually modified or deleted),
             for the cluster's `jobs` collection and for all of its collections;
  commands   serverStatus opcounters (SecantusDB counts one per insert/update/delete
             command, i.e. per round trip, however many documents it carries; mongod
             counts inserts per document). They are server-wide.
The oplog must hold the whole workload: the bench's embedded server is started with a big
enough one, and `complete` says whether the window was covered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient

OPS = {"i": "insert", "u": "update", "d": "delete"}
COMMANDS = ("insert", "update", "delete")


@dataclass(frozen=True)
class WriteMark:
    """Where the server's counters stood at one moment."""

    opcounters: dict[str, int]
    oplog_ts: Any  # bson Timestamp of the newest oplog entry, or None (no oplog)


async def mark(client: AsyncMongoClient) -> WriteMark:
    status = await client.admin.command("serverStatus")
    newest = await client.local["oplog.rs"].find_one({}, sort=[("ts", -1)])
    return WriteMark(dict(status.get("opcounters", {})), newest["ts"] if newest else None)


async def writes_between(client: AsyncMongoClient, before: WriteMark, after: WriteMark, database: str,
                         jobs: int) -> dict[str, Any]:
    """Writes per job between two marks, `jobs` being how many jobs the workload ran."""
    commands = {name: after.opcounters.get(name, 0) - before.opcounters.get(name, 0) for name in COMMANDS}
    report: dict[str, Any] = {
        "jobs": jobs,
        "commands_per_job": {name: round(n / jobs, 4) for name, n in commands.items()},
        "commands_total": commands,
    }
    if before.oplog_ts is None or after.oplog_ts is None:
        report["documents_per_job"] = None
        report["note"] = "this server keeps no oplog: only commands were counted"
        return report
    oplog = client.local["oplog.rs"]
    oldest = await oplog.find_one({}, sort=[("ts", 1)])
    window = {"ts": {"$gt": before.oplog_ts, "$lte": after.oplog_ts}}
    jobs_ns = f"{database}.jobs"
    counts: dict[str, dict[str, int]] = {"jobs": {}, "all": {}}
    async for entry in oplog.find({**window, "ns": {"$regex": f"^{database}\\."}}, {"op": 1, "ns": 1}):
        op = OPS.get(entry.get("op"))
        if op is None:
            continue
        counts["all"][op] = counts["all"].get(op, 0) + 1
        if entry.get("ns") == jobs_ns:
            counts["jobs"][op] = counts["jobs"].get(op, 0) + 1
    report["documents_per_job"] = {
        scope: {op: round(counts[scope].get(op, 0) / jobs, 4) for op in OPS.values()} for scope in counts
    }
    report["documents_total"] = counts
    report["complete"] = oldest is not None and oldest["ts"] <= before.oplog_ts
    return report
