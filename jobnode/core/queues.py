"""Named queues: what a queue name may be, and how a node's QUEUES become its groups of workers.

A job waits in one queue (`default` unless the submitter or its processor's registration
names another). A node serves the queues in QUEUES; a queue given a count there
(`media:2`) gets that many workers of its own, which run only its jobs, so never more than
that many of them run on the node at once. The queues without a count share the node's
WORKER_COUNT workers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from jobnode.core.job import DEFAULT_QUEUE

QUEUE_NAME = re.compile(r"[a-z0-9_.-]{1,64}")
QUEUE_NAME_RULE = "1-64 lowercase letters, digits, '_', '.' or '-'"
MAX_QUEUE_WORKERS = 1000


def is_queue_name(value: object) -> bool:
    return isinstance(value, str) and QUEUE_NAME.fullmatch(value) is not None


def parse_queues(text: str) -> dict[str, int | None]:
    """Read `default:8,media:2` (or `default,media`) into {queue: its own worker count or None}."""
    queues: dict[str, int | None] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, colon, count_text = item.partition(":")
        name = name.strip()
        if not is_queue_name(name):
            raise ValueError(f"queue name {name!r} must be {QUEUE_NAME_RULE}")
        if name in queues:
            raise ValueError(f"queue {name!r} is listed twice")
        count = None
        if colon:
            count_text = count_text.strip()
            if not count_text.isdigit() or not 1 <= int(count_text) <= MAX_QUEUE_WORKERS:
                raise ValueError(f"the worker count of {name!r} must be an integer from 1 to {MAX_QUEUE_WORKERS}")
            count = int(count_text)
        queues[name] = count
    return queues


def format_queues(queues: Mapping[str, int | None]) -> str:
    return ",".join(name if count is None else f"{name}:{count}" for name, count in queues.items())


@dataclass(frozen=True)
class WorkerGroup:
    """Workers of one node that serve the same queues (and, as every worker of the node, its types)."""

    queues: tuple[str, ...]
    workers: int


def served_queues(configured: Mapping[str, int | None], processor_queues: Iterable[str]) -> dict[str, int | None]:
    """The queues a node serves: QUEUES when set, else `default` plus its processors' queues."""
    if configured:
        return dict(configured)
    return {DEFAULT_QUEUE: None, **{name: None for name in sorted(set(processor_queues)) if name != DEFAULT_QUEUE}}


def worker_groups(served: Mapping[str, int | None], worker_count: int) -> list[WorkerGroup]:
    """Counted queues get their own workers; the others share `worker_count` workers."""
    groups = [WorkerGroup((name,), count) for name, count in served.items() if count is not None]
    shared = tuple(name for name, count in served.items() if count is None)
    if shared and worker_count > 0:
        groups.insert(0, WorkerGroup(shared, worker_count))
    return groups
