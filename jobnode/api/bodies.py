"""Reading request bodies and query parameters, with errors that name the problem."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from aiohttp import hdrs, web

from jobnode.core.errors import UnsupportedMediaType, ValidationError

JOB_ID = re.compile(r"^[0-9a-f]{32}$")


async def read_json(request: web.Request) -> Any:
    """The body as JSON; 415 unless it says it is JSON, 413 over the size limit, 400 if malformed."""
    _require_json_content_type(request)
    raw = await request.read()  # aiohttp enforces client_max_size here (413)
    if not raw:
        raise ValidationError("body", "request body is empty; expected a JSON object")
    return _parse_json(raw)


def _parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "infinity" not in str(exc):
            raise ValidationError("body", f"request body is not valid JSON: {exc}") from None
    # orjson refuses numbers too large for a double (1e309) without saying where; the standard
    # parser reads them as infinity, which the field's own check then refuses by name.
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
        orjson.dumps(value)  # the standard parser lets lone surrogates ("\ud800") through; orjson does not
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValidationError("body", f"request body is not valid JSON: {exc}") from None
    return value


def _require_json_content_type(request: web.Request) -> None:
    details = {"field": "Content-Type", "expected": "application/json"}
    if hdrs.CONTENT_TYPE not in request.headers:
        raise UnsupportedMediaType(
            "request has no Content-Type header; send the body as JSON with Content-Type: application/json",
            details=details,
        )
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"request body must be JSON (Content-Type: application/json), got {request.content_type!r}",
            details={**details, "got": request.content_type},
        )


def _refuse_constant(name: str) -> Any:
    # NaN, Infinity and -Infinity are not JSON, whatever Python's json module would accept.
    raise ValueError(f"{name} is not a JSON value")


def job_id_param(request: web.Request) -> str:
    job_id = request.match_info["job_id"]
    if not JOB_ID.match(job_id):
        raise ValidationError("id", "must be a job id: 32 lowercase hexadecimal characters")
    return job_id


def int_query(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(name, f"must be an integer from {low} to {high}") from None
    if not low <= value <= high:
        raise ValidationError(name, f"must be from {low} to {high}, got {value}")
    return value
