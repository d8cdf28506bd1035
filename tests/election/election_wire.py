"""A hand-driven cluster for regression tests that need exact message order.

Unlike `jobnode.election.sim`, nothing happens by itself: messages wait in `inflight`
until the test delivers or drops them, and time moves only when the test says.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from jobnode import election
from jobnode.election.config import CONFIG_CLASSES


def address(node_id: str) -> str:
    return f"wire://{node_id}"


class Wire:
    """N machines of one algorithm whose every message is released by hand."""

    def __init__(self, algorithm: str, ids: list[str], **fields: Any) -> None:
        self.algorithm = algorithm
        self.configs = {
            i: CONFIG_CLASSES[algorithm](node_id=i, address=address(i),
                                         peers={j: address(j) for j in ids if j != i}, **fields)
            for i in ids
        }
        self.nodes: dict[str, Any] = {}
        self.disk: dict[str, election.RaftPersistentState] = {}
        self.inflight: list[Any] = []
        self.events: list[tuple[str, Any]] = []
        self.generation = dict.fromkeys(ids, 0)
        for node_id in ids:
            self.nodes[node_id] = self._create(node_id)

    def _create(self, node_id: str) -> Any:
        self.generation[node_id] += 1
        rng = random.Random(f"{node_id}:{self.generation[node_id]}")
        persisted = self.disk.get(node_id) if self.algorithm == "raft" else None
        return election.create(self.algorithm, self.configs[node_id], rng, persisted)

    def feed(self, node_id: str, out: election.Output) -> election.Output:
        """Apply an output the way the daemon must: persist, then send, then record."""
        if out.persist is not None:
            self.disk[node_id] = out.persist
        self.inflight.extend(out.messages)
        self.events.extend((node_id, e) for e in out.events)
        return out

    def start(self, now: float = 0.0) -> None:
        for node_id, machine in self.nodes.items():
            self.feed(node_id, machine.start(now))

    def tick(self, node_id: str, now: float) -> election.Output:
        return self.feed(node_id, self.nodes[node_id].on_tick(now))

    def take(self, where: Callable[[Any], bool] = lambda m: True) -> list[Any]:
        """Remove and return in-flight messages matching `where` (they are lost)."""
        taken = [m for m in self.inflight if where(m)]
        self.inflight = [m for m in self.inflight if not where(m)]
        return taken

    def deliver(self, now: float, where: Callable[[Any], bool] = lambda m: True, rounds: int = 100) -> int:
        """Deliver matching messages, and matching replies to them, until none is left."""
        count = 0
        for _ in range(rounds):
            batch = self.take(where)
            if not batch:
                break
            for msg in batch:
                dst = next((i for i in self.nodes if address(i) == msg.dst_address), None)
                if dst is not None and self.nodes[dst] is not None:
                    self.feed(dst, self.nodes[dst].on_message(msg, now))
                    count += 1
        return count

    def crash(self, node_id: str) -> None:
        self.nodes[node_id] = None
        self.take(lambda m: node_id in (m.src, m.dst))

    def restart(self, node_id: str, now: float) -> election.Output:
        self.nodes[node_id] = self._create(node_id)
        return self.feed(node_id, self.nodes[node_id].start(now))

    def leaders(self) -> dict[str, str | None]:
        return {i: m.leader for i, m in self.nodes.items() if m is not None}


def between(*ids: str) -> Callable[[Any], bool]:
    """Messages whose sender and receiver are both among `ids`."""
    addresses = {address(i) for i in ids}
    return lambda m: m.src in ids and m.dst_address in addresses


def of(kind: type, **fields: Any) -> Callable[[Any], bool]:
    """Messages of class `kind` whose attributes equal `fields`."""
    return lambda m: isinstance(m, kind) and all(getattr(m, k) == v for k, v in fields.items())
