"""Where MongoDB driver errors that mean "cannot reach it" become jobnode's Unavailable."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import structlog
from pymongo import errors as mongo_errors

from jobnode.core import store_errors
from jobnode.core.errors import Unavailable

log = structlog.get_logger(__name__)

# What callers (and so the public) are told: the driver's text names hosts and ports.
MONGODB_UNAVAILABLE = "mongodb unavailable"

P = ParamSpec("P")
R = TypeVar("R")

UNREACHABLE = (mongo_errors.ConnectionFailure, mongo_errors.ExecutionTimeout)


def unavailable(exc: Exception, operation: str) -> Unavailable:
    """The Unavailable to raise for `exc`, counted as a failure of `operation`."""
    store_errors.report("mongodb", operation, "unreachable")
    log.warning("mongodb.unavailable", operation=operation, error=str(exc) or type(exc).__name__)
    return Unavailable(MONGODB_UNAVAILABLE)


def mongo_boundary(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap a coroutine function so an unreachable MongoDB raises Unavailable."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except UNREACHABLE as exc:
            raise unavailable(exc, fn.__name__) from exc

    return wrapper
