"""The processor protocol, its failure contract, and the registry that finds a processor by job type.

A processor is anything with a `type` name and `async def process(job) -> result` (a JSON-able
value). The registry takes processors from installed distributions (entry points of the group
`jobnode.processors`) and from code (`register_processor`); `jobnode.processors.catalog` adds the
built-ins and merges the three sources into the registry a node serves.

Failure contract: raising `PermanentError` means "retrying cannot help" and the job fails at once;
any other exception (including `RetryableError`, which just says so explicitly) and a timeout are
retried under the node's retry policy.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

from jobnode.core.errors import NotFound
from jobnode.core.job import DEFAULT_QUEUE, DURABILITIES, Job
from jobnode.core.job_types import TypeSpec
from jobnode.core.queues import QUEUE_NAME_RULE, is_queue_name
from jobnode.core.schemas import as_json_schema
from jobnode.core.submission import MAX_TYPE_LEN

ENTRY_POINT_GROUP = "jobnode.processors"

log = logging.getLogger(__name__)

T = TypeVar("T")
ProcessFn = Callable[[Job], Awaitable[Any]]


@runtime_checkable
class Processor(Protocol):
    """What the worker pool calls to run a job; `type` is the job type it serves.

    A processor may also define `async def close()`, awaited by `ProcessorRegistry.close()` at
    shutdown to release connections it holds, a `queue` (where its jobs go when the submitter
    names none) and a `payload_schema` (a JSON Schema dict, checked at submit time).
    """

    type: str

    async def process(self, job: Job) -> Any: ...


class PermanentError(Exception):
    """A failure that retrying cannot fix (bad payload, a 4xx answer): the job fails without retries.

    `field` names the offending payload field when there is one, e.g. "payload.url".
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RetryableError(Exception):
    """A failure worth retrying (connection refused, 5xx); any non-permanent exception behaves alike."""


class UnknownProcessorType(NotFound, KeyError):
    """No processor is registered for the job type asked for (also a KeyError: it is a failed lookup)."""

    def __init__(self, type_name: str, registered: list[str]) -> None:
        super().__init__(
            f"no processor for job type {type_name!r}; registered types: {', '.join(registered) or '(none)'}",
            details={"type": type_name, "registered_types": registered},
        )
        self.type_name = type_name

    def __str__(self) -> str:  # KeyError's own __str__ would show the message quoted
        return self.message


class FunctionProcessor:
    """Adapts a bare `async def fn(job)` into a Processor named `type`."""

    def __init__(self, type_name: str, fn: ProcessFn) -> None:
        self.type = type_name
        self.fn = fn

    async def process(self, job: Job) -> Any:
        return await self.fn(job)

    def __repr__(self) -> str:
        # Module and name: a warning about a replaced type then says where both came from.
        origin = f"{getattr(self.fn, '__module__', '?')}.{getattr(self.fn, '__qualname__', self.fn)}"
        return f"FunctionProcessor({self.type!r}, {origin!r})"


class ProcessorRegistry:
    """Job type name → Processor.

    Registering a name that is already taken replaces the old processor and logs a warning
    (so a plugin or application can deliberately override a built-in); the replaced processor
    is still closed by `close()`.
    """

    def __init__(self) -> None:
        self._processors: dict[str, Processor] = {}
        self._specs: dict[str, TypeSpec] = {}
        self._retired: list[Processor] = []
        # Entry points that could not be loaded, name → reason, for diagnostics.
        self.load_errors: dict[str, str] = {}

    def register(self, type_name: str, target: Any, *, queue: str | None = None, payload: Any = None) -> Processor:
        """Register a Processor instance, a Processor class (instantiated with no arguments)
        or an async function under `type_name`, optionally with its default queue and its
        payload schema (a JSON Schema dict, or a model class with `model_json_schema()`).
        Raises TypeError/ValueError for anything else."""
        processor = as_processor(type_name, target)
        self.add(processor, queue=queue, payload=payload, doc_of=target)
        return processor

    def add(self, processor: Processor, *, queue: str | None = None, payload: Any = None,
            doc_of: Any = None) -> None:
        """Register a ready-made processor under its own `type`."""
        _check_type_name(processor.type)
        self._put(processor, type_spec(processor, queue=queue, payload=payload, doc_of=doc_of))

    def _put(self, processor: Processor, spec: TypeSpec) -> None:
        old = self._processors.get(processor.type)
        if old is not None and old is not processor:
            log.warning(
                "processor for job type %r replaced: %r -> %r", processor.type, old, processor
            )
            self._retired.append(old)
        self._processors[processor.type] = processor
        self._specs[processor.type] = spec

    def update(self, other: ProcessorRegistry) -> None:
        """Register every processor of `other` here (same replacement rule as `add`)."""
        for name, processor in other._processors.items():
            self._put(processor, other._specs[name])

    def spec(self, type_name: str) -> TypeSpec:
        """The type's queue, payload schema and description."""
        self.get(type_name)  # the same error as a lookup of the processor
        return self._specs[type_name]

    def specs(self) -> list[TypeSpec]:
        return [self._specs[name] for name in self.types()]

    def queues(self) -> set[str]:
        """The default queues of the processors here."""
        return {spec.queue for spec in self._specs.values()}

    def get(self, type_name: str) -> Processor:
        try:
            return self._processors[type_name]
        except KeyError:
            raise UnknownProcessorType(type_name, self.types()) from None

    def types(self) -> list[str]:
        return sorted(self._processors)

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._processors

    def __len__(self) -> int:
        return len(self._processors)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register the processors that installed distributions declare in `group`.

        The entry point's name is the job type. A broken entry point (import error, wrong kind of
        object, constructor failure, name mismatch) is logged, recorded in `load_errors` and skipped:
        one bad plugin must not keep the node from starting. Returns the names registered.
        """
        loaded = []
        for entry_point in importlib.metadata.entry_points(group=group):
            try:
                self.register(entry_point.name, entry_point.load())
            except Exception as exc:  # a plugin may fail in any way; see docstring
                reason = f"{type(exc).__name__}: {exc}"
                self.load_errors[entry_point.name] = reason
                log.error(
                    "skipping processor entry point %r (%s) from %s: %s",
                    entry_point.name,
                    entry_point.value,
                    _distribution_name(entry_point),
                    reason,
                    exc_info=exc,
                )
            else:
                loaded.append(entry_point.name)
        return loaded

    async def close(self) -> None:
        """Release what processors hold (HTTP sessions and the like); errors are logged, not raised."""
        seen: set[int] = set()
        for processor in [*self._processors.values(), *self._retired]:
            close = getattr(processor, "close", None)
            if id(processor) in seen or close is None:
                continue
            seen.add(id(processor))
            try:
                await close()
            except Exception:
                log.exception("closing processor %r failed", processor)


def as_processor(type_name: str, target: Any) -> Processor:
    """Turn what a user registered (instance, class or async function) into a Processor."""
    _check_type_name(type_name)
    if inspect.isclass(target):
        target = target()
    process = getattr(target, "process", None)
    if process is not None:
        if not inspect.iscoroutinefunction(process):
            raise TypeError(f"processor {type_name!r}: {target!r}.process must be an async method")
        own_type = getattr(target, "type", None)
        if own_type != type_name:
            raise ValueError(
                f"processor {target!r} has type {own_type!r} but is registered as {type_name!r}; "
                "they must match"
            )
        return target
    if inspect.iscoroutinefunction(target):
        return FunctionProcessor(type_name, target)
    if callable(target):
        raise TypeError(
            f"processor {type_name!r}: {target!r} is a plain function; it must be `async def fn(job)` "
            "(wrap blocking work in `await run_in_thread(...)`)"
        )
    raise TypeError(
        f"processor {type_name!r}: {target!r} is not a processor "
        "(expected an object or class with `async def process(job)`, or an async function)"
    )


def type_spec(processor: Processor, *, queue: str | None = None, payload: Any = None,
              doc_of: Any = None) -> TypeSpec:
    """What the cluster is told about a processor: explicit arguments first, then its own attributes."""
    queue = queue if queue is not None else getattr(processor, "queue", None) or DEFAULT_QUEUE
    if not is_queue_name(queue):
        raise ValueError(f"processor {processor.type!r}: queue {queue!r} must be {QUEUE_NAME_RULE}")
    declared = payload if payload is not None else getattr(processor, "payload_schema", None)
    try:
        schema = as_json_schema(declared) if declared is not None else None
    except ValueError as exc:
        raise ValueError(f"processor {processor.type!r}: payload {exc}") from None
    described = doc_of if doc_of is not None else processor
    if isinstance(processor, FunctionProcessor):
        described = processor.fn
    doc = inspect.getdoc(described)  # an instance without its own: its class's
    durability = getattr(processor, "durability", None)
    if durability is not None and durability not in DURABILITIES:
        raise ValueError(f"processor {processor.type!r}: durability {durability!r} must be one of "
                         f"{', '.join(DURABILITIES)}")
    return TypeSpec(processor.type, queue, schema, doc or "", durability=durability)


def _check_type_name(type_name: Any) -> None:
    if (
        not isinstance(type_name, str)
        or not type_name
        or len(type_name) > MAX_TYPE_LEN
        or any(ch.isspace() or not ch.isprintable() for ch in type_name)
    ):
        raise ValueError(
            f"processor type name {type_name!r} must be a non-empty string of at most "
            f"{MAX_TYPE_LEN} printable characters without whitespace"
        )


def _distribution_name(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    return dist.name if dist is not None else "an unknown distribution"


default_registry = ProcessorRegistry()
"""Where `register_processor` puts code-registered processors; `catalog.build_registry` copies them."""


def register_processor(type_name: str, target: Any = None, *, queue: str | None = None,
                       payload: Any = None) -> Any:
    """Register a processor in code, into `default_registry`.

    Either `register_processor("resize", fn_or_class_or_instance)`, or as a decorator on an async
    function or a processor class: `@register_processor("resize")`. The decorator returns what it
    decorates unchanged. `queue` is where the type's jobs go when the submitter names none
    (default `default`); `payload` is the payload's JSON Schema (a dict) or a model class with
    `model_json_schema()`, checked when a job is submitted, on any node.
    """
    if target is not None:
        default_registry.register(type_name, target, queue=queue, payload=payload)
        return target

    def decorate(obj: T) -> T:
        default_registry.register(type_name, obj, queue=queue, payload=payload)
        return obj

    return decorate
