"""What `jobnode status` shows: one node's view of the cluster, and the screen drawn from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobnode.cli.output import cell_text, format_table

JOB_COUNTS = ("pending", "assigned", "running", "retrying", "completed", "failed", "cancelled", "total")
QUEUE_COUNTS = ("pending", "processing", "delayed", "completed", "failed", "dead_letter")


@dataclass
class StatusSnapshot:
    """What `jobnode status` shows, from one node: its stats plus whichever cluster views it may read."""

    url: str
    stats: dict
    leader: dict | None = None  # /api/v1/leader (absent on older nodes)
    nodes: dict | None = None  # /api/v1/nodes (admin)
    workers: dict | None = None  # /api/v1/workers (admin)

    def as_json(self) -> dict:
        return {"url": self.url, "stats": self.stats, "leader": self.leader, "nodes": self.nodes,
                "workers": self.workers}


def render_status(snapshot: StatusSnapshot) -> str:
    """The status screen: a summary, the node table when readable, then job and queue counts."""
    stats = snapshot.stats
    sections = [_render_summary(snapshot)]
    if snapshot.nodes is not None:
        sections.append(_render_nodes(snapshot.nodes.get("nodes", []), snapshot.workers))
    jobs, queue = stats.get("jobs") or {}, stats.get("queue") or {}
    sections.append(format_table(["jobs", *JOB_COUNTS], [["", *(jobs.get(k) for k in JOB_COUNTS)]]))
    sections.append(format_table(["queue", *QUEUE_COUNTS], [["", *(queue.get(k) for k in QUEUE_COUNTS)]]))
    return "\n\n".join(sections)


def _render_summary(snapshot: StatusSnapshot) -> str:
    stats, leader = snapshot.stats, snapshot.leader or {}
    node, lease = stats.get("node") or {}, stats.get("leader") or {}
    leader_id = leader.get("leader_id") or lease.get("leader_id") or lease.get("id")
    leader_text = " ".join(str(part) for part in (leader_id or "none", leader.get("address")) if part)
    if leader.get("since"):
        leader_text += f" since {leader['since']}"
    summary = [
        ("node", f"{node.get('id', '-')} ({'leader' if node.get('is_leader') else 'follower'})"),
        ("leader", leader_text),
        ("term", leader.get("term", lease.get("term"))),
        ("algorithm", leader.get("algorithm", lease.get("algorithm"))),
        ("nodes", _node_count_text(stats, snapshot.nodes)),
        ("workers", _workers_text(node, snapshot.nodes)),
        ("strategy", node.get("strategy")),
    ]
    throughput = stats.get("throughput")
    if isinstance(throughput, dict) and throughput.get("completed_per_s") is not None:
        window = f" over the last {cell_text(throughput['window_s'])}s" if throughput.get("window_s") else ""
        summary.append(("throughput", f"{throughput['completed_per_s']:.1f} jobs/s completed{window}"))
    width = max(len(name) for name, _ in summary)
    return "\n".join(f"{name.ljust(width)}  {cell_text(value)}" for name, value in summary)


def _node_count_text(stats: dict, nodes: dict | None) -> Any:
    if nodes is None:
        return stats.get("node_count")
    items = nodes.get("nodes", [])
    healthy = sum(1 for item in items if _node_field(item, "health") in ("healthy", "ok"))
    return f"{len(items)} ({healthy} healthy)"


def _workers_text(node: dict, nodes: dict | None) -> Any:
    """Busy and total workers of the live nodes when the node list is readable, else this node's.

    A node that stopped answering keeps its last heartbeat's figures in the list; its workers
    do no work, so they count neither as busy nor as idle.
    """
    items = nodes.get("nodes", []) if nodes is not None else [node]
    live = [item for item in items if not _is_down(item)]
    down = len(items) - len(live)
    total = sum(item.get("worker_count") or 0 for item in live)
    suffix = f" ({down} down node{'s' if down != 1 else ''} not counted)" if down else ""
    if all(item.get("workers_busy") is None for item in live):
        return f"{total}{suffix}" if nodes is not None else node.get("worker_count")
    busy = sum(item.get("workers_busy") or 0 for item in live)
    return f"{busy} busy of {total}" + ("" if nodes is not None else " on this node") + suffix


def _is_down(item: dict) -> bool:
    return _node_field(item, "health") not in (None, "healthy", "ok")


NODE_COLUMNS = ("id", "role", "health", "term", "worker_count", "workers_busy", "processed", "failed", "address",
                "last_seen")
NODE_HEADERS = ("node", "role", "health", "term", "workers", "busy", "processed", "failed", "address", "last seen")


def _render_nodes(items: list[dict], workers: dict | None) -> str:
    """One row per node; processed/failed add up its workers' counts when the worker list is readable."""
    done: dict[str, dict[str, int]] = {}
    for worker in (workers or {}).get("workers", []):
        counts = done.setdefault(worker.get("node_id"), {"processed": 0, "failed": 0})
        for key in counts:
            counts[key] += worker.get(key) or 0
    rows = []
    for item in items:
        merged = item | done.get(item.get("id"), {})
        if _is_down(item):
            merged["workers_busy"] = None  # the last figure it sent, not what it does now
        rows.append([_node_field(merged, column) for column in NODE_COLUMNS])
    return format_table(NODE_HEADERS, rows)


def _node_field(item: dict, column: str) -> Any:
    if column == "role":
        return item.get("role") or ("leader" if item.get("is_leader") else "follower")
    value = item.get(column)
    if column == "health" and isinstance(value, dict):  # a health report: show its verdict
        return value.get("status", value)
    return value
