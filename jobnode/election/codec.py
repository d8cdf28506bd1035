"""The one wire format for election messages: JSON-safe dicts with a "kind".

`decode` is fed whatever arrived over HTTP, so it trusts nothing: every field
is checked against the dataclass's declared type and any problem becomes a
`DecodeError` that names the field. Unknown extra keys are ignored so a newer
node can add fields without breaking an older one.
"""

from __future__ import annotations

import functools
import math
import types
import typing
from dataclasses import fields, is_dataclass
from typing import Any

from .base import MEMBER_STATES
from .messages import MESSAGE_TYPES, Address, Count, Message, NodeId, Recipient, State

_BY_KIND: dict[str, type[Message]] = {cls.KIND: cls for cls in MESSAGE_TYPES}
_MAX_ID = 256
_MAX_ADDRESS = 2048
_MAX_TEXT = 1 << 20
_MAX_ITEMS = 10_000
_MAX_INT = 1 << 63


class DecodeError(ValueError):
    """A wire message that is not a valid election message; says which field and why."""


def encode(msg: Message) -> dict[str, Any]:
    """The JSON-safe form of `msg`, with its "kind"."""
    if type(msg) not in _BY_KIND.values():
        raise TypeError(f"not an election message: {type(msg).__name__}")
    return {"kind": msg.KIND, **_plain(msg)}


def decode(data: Any) -> Message:
    """Rebuild a message from `encode`'s form; raises DecodeError on anything else."""
    if not isinstance(data, dict):
        raise DecodeError(f"message must be a JSON object, got {type(data).__name__}")
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in _BY_KIND:
        raise DecodeError(f"kind {kind!r} is not one of {sorted(_BY_KIND)}")
    return _build(_BY_KIND[kind], data, kind)


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@functools.cache
def _field_types(cls: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in fields(cls)}


def _build(cls: Any, data: dict[str, Any], path: str) -> Any:
    values = {}
    for name, hint in _field_types(cls).items():
        if name not in data:
            raise DecodeError(f"{path}: missing field {name!r}")
        values[name] = _convert(hint, data[name], f"{path}.{name}")
    return cls(**values)


def _convert(hint: Any, value: Any, path: str) -> Any:
    check = _SCALARS.get(hint)
    if check is not None:
        return check(value, path)
    if is_dataclass(hint):
        if not isinstance(value, dict):
            raise DecodeError(f"{path}: expected an object, got {type(value).__name__}")
        return _build(hint, value, path)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, (list, tuple)) or len(value) > _MAX_ITEMS:
            raise DecodeError(f"{path}: expected a list of at most {_MAX_ITEMS} items")
        return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, path)
    raise TypeError(f"codec cannot handle field type {hint!r} at {path}")


def _text(limit: int, allow_empty: bool = False):
    def check(value: Any, path: str) -> str:
        if type(value) is not str or len(value) > limit or (not value and not allow_empty):
            need = "a" if allow_empty else "a non-empty"
            raise DecodeError(f"{path}: expected {need} string of at most {limit} characters, got {value!r:.80}")
        return value
    return check


def _int(minimum: int):
    def check(value: Any, path: str) -> int:
        if type(value) is not int or not minimum <= value < _MAX_INT:
            raise DecodeError(f"{path}: expected an int in [{minimum}, 2**63), got {value!r:.80}")
        return value
    return check


def _bool(value: Any, path: str) -> bool:
    if type(value) is not bool:
        raise DecodeError(f"{path}: expected true or false, got {value!r:.80}")
    return value


def _float(value: Any, path: str) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise DecodeError(f"{path}: expected a finite number, got {value!r:.80}")
    return float(value)


def _state(value: Any, path: str) -> str:
    if value not in MEMBER_STATES or type(value) is not str:
        raise DecodeError(f"{path}: expected one of {list(MEMBER_STATES)}, got {value!r:.80}")
    return value


_SCALARS = {
    NodeId: _text(_MAX_ID),
    Recipient: _text(_MAX_ID, allow_empty=True),
    Address: _text(_MAX_ADDRESS),
    str: _text(_MAX_TEXT, allow_empty=True),
    Count: _int(0),
    int: _int(-_MAX_INT),
    bool: _bool,
    float: _float,
    State: _state,
}
