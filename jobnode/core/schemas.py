"""Payload schemas: a job type's JSON Schema, checked at submit time on whichever node takes the job.

A processor declares its payload as a JSON Schema (a dict) or as a model class that can
describe itself as one (`model_json_schema()`, as pydantic v2 models do); either way the
cluster publishes and checks the JSON Schema, so a node that does not run the type (and
may not have the model's code) checks it all the same. Validation is jsonschema-rs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jsonschema_rs


class SchemaError(ValueError):
    """A payload schema that is not a valid JSON Schema (or not one at all)."""


@dataclass(frozen=True)
class FieldProblem:
    field: str  # e.g. payload.width, jobs[2].payload.items[0]
    message: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


def as_json_schema(declared: Any) -> dict[str, Any]:
    """The JSON Schema of what `register_processor(..., payload=...)` was given."""
    describe = getattr(declared, "model_json_schema", None)
    schema = describe() if callable(describe) else declared
    if not isinstance(schema, dict):
        raise SchemaError(f"a payload schema must be a JSON Schema dict or a model with model_json_schema(), "
                          f"got {type(declared).__name__}")
    try:
        jsonschema_rs.validator_for(schema)
    except (jsonschema_rs.ValidationError, ValueError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SchemaError(f"not a valid JSON Schema: {first_line}") from None
    return schema


class PayloadCheck:
    """One compiled schema: `problems(payload)` names every failing field."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._validator = jsonschema_rs.validator_for(schema)

    def problems(self, payload: Any, field: str = "payload") -> list[FieldProblem]:
        found: list[FieldProblem] = []
        for error in self._validator.iter_errors(payload):
            where = _path(field, error.instance_path)
            kind = error.kind
            named = getattr(kind, "property", None) if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required) \
                else None
            if named is not None:  # a missing field: name the field, not the object that lacks it
                found.append(FieldProblem(_path(where, [str(named)]), "is required"))
            elif isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
                found.extend(FieldProblem(_path(where, [str(name)]), "is not a field of this payload")
                             for name in kind.unexpected)
            else:
                found.append(FieldProblem(where, error.message))
        return found


def _path(root: str, parts: Iterable[Any]) -> str:
    text = root
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text
