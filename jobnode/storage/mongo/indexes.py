"""Replacing an index when a node starts: the new one is created, then the old one dropped.

The nodes of a cluster start together and each checks the indexes, so two may drop the same
old index: the one that finds it already gone has nothing left to do.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

INDEX_NOT_FOUND = 27  # dropIndexes of an index that is not there


async def drop_replaced(collection: AsyncCollection, names: Iterable[str], existing: Collection[str]) -> None:
    """Drop those of the indexes `names` that were among `existing` (read before the new ones were made)."""
    for name in names:
        if name not in existing:
            continue
        try:
            await collection.drop_index(name)
        except OperationFailure as exc:
            if exc.code != INDEX_NOT_FOUND:  # else another node starting with us dropped it first
                raise
