"""Which events a subscriber gets: the query's filters and what the caller's role may see.

Each filter (`type`, `queue`, `job`, `event`) takes one or more prefixes, repeated or
comma-separated; an event passes a filter when one prefix matches, and passes the whole
when it passes every filter given. `type`, `queue` and `job` describe jobs, so with any of
them set only job events pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from jobnode.core.errors import ValidationError
from jobnode.events.event import Event

FILTERS = ("type", "queue", "job", "event")
MAX_PREFIXES = 50
MAX_PREFIX_CHARS = 128


@dataclass(frozen=True)
class Visibility:
    """What a caller may see: all job events, only one submitter's, or none (cluster events only)."""

    jobs: bool = True
    owner: str | None = None  # set: only job events of jobs this subject submitted

    def allows(self, event: Event) -> bool:
        if event.job is None:
            return True
        return self.jobs and (self.owner is None or event.owner == self.owner)


EVERYTHING = Visibility()


@dataclass(frozen=True)
class EventFilter:
    types: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    visibility: Visibility = EVERYTHING

    def matches(self, event: Event) -> bool:
        if not self.visibility.allows(event):
            return False
        if self.events and not event.name.startswith(self.events):
            return False
        if self.types or self.queues or self.jobs:
            if event.job is None:
                return False
            if self.jobs and not event.job.startswith(self.jobs):
                return False
            if self.types and not (event.type or "").startswith(self.types):
                return False
            if self.queues and not (event.queue or "").startswith(self.queues):
                return False
        return True


def parse_filter(query: Mapping[str, Sequence[str]], visibility: Visibility = EVERYTHING) -> EventFilter:
    """The filter a request's query asks for (`query`: name -> every value given for it)."""
    found: dict[str, tuple[str, ...]] = {}
    for name in FILTERS:
        prefixes = tuple(_split(query.get(name, ())))
        if len(prefixes) > MAX_PREFIXES:
            raise ValidationError(name, f"at most {MAX_PREFIXES} prefixes, got {len(prefixes)}")
        for prefix in prefixes:
            if len(prefix) > MAX_PREFIX_CHARS or not prefix.isprintable():
                raise ValidationError(name, f"each prefix must be printable text of at most {MAX_PREFIX_CHARS} "
                                            f"characters")
        found[name] = prefixes
    return EventFilter(types=found["type"], queues=found["queue"], jobs=found["job"], events=found["event"],
                       visibility=visibility)


def _split(values: Iterable[str]) -> Iterable[str]:
    for value in values:
        for part in value.split(","):
            if part.strip():
                yield part.strip()
