"""Where MongoDB driver errors that mean "cannot reach it" become jobnode's Unavailable."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from pymongo import errors as mongo_errors

from jobnode.core.errors import Unavailable

P = ParamSpec("P")
R = TypeVar("R")

UNREACHABLE = (mongo_errors.ConnectionFailure, mongo_errors.ExecutionTimeout)


def unavailable(exc: Exception) -> Unavailable:
    return Unavailable(f"mongodb is unreachable: {exc}")


def mongo_boundary(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap a coroutine function so an unreachable MongoDB raises Unavailable."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc

    return wrapper
