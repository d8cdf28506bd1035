"""A job type as the cluster knows it: its queue, its payload schema and its description.

Every node publishes the types it runs (jobnode.storage.redis.catalog), so any node can
check a submission against a type it does not run itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobnode.core.job import DEFAULT_QUEUE, DURABILITIES


@dataclass(frozen=True)
class TypeSpec:
    type: str
    queue: str = DEFAULT_QUEUE  # where its jobs go when the submitter names no queue
    schema: dict[str, Any] | None = None  # JSON Schema of the payload; None: any object
    doc: str = ""
    durability: str | None = None  # its jobs' durability when the submitter names none (None: the node's)
    nodes: tuple[str, ...] = field(default=(), compare=False)  # nodes running it now (reads only)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "queue": self.queue, "payload_schema": self.schema, "doc": self.doc,
                "durability": self.durability}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TypeSpec:
        return cls(type=str(data["type"]), queue=str(data.get("queue") or DEFAULT_QUEUE),
                   schema=data.get("payload_schema"), doc=str(data.get("doc") or ""),
                   durability=data.get("durability") if data.get("durability") in DURABILITIES else None)
