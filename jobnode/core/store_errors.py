"""Failures of Redis and MongoDB, reported where the storage boundaries catch them.

The storage layer sits below observability, so it cannot count into a metric itself: it
reports here, and the node's wiring subscribes its metrics (and unsubscribes at stop).
"""

from __future__ import annotations

from collections.abc import Callable

# store ("redis", "mongodb"), operation (the adapter method), kind ("unreachable", "refused")
Listener = Callable[[str, str, str], None]

_listeners: list[Listener] = []


def subscribe(listener: Listener) -> Callable[[], None]:
    """Call `listener` for every store error from now on; returns the call that stops it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def report(store: str, operation: str, kind: str) -> None:
    for listener in list(_listeners):
        listener(store, operation, kind)
