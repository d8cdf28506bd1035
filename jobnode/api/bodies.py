"""Reading request bodies and query parameters, with errors that name the problem."""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from jobnode.errors import UnsupportedMediaType, ValidationError

JOB_ID = re.compile(r"^[0-9a-f]{32}$")


async def read_json(request: web.Request) -> Any:
    """The body as JSON; 415 unless it says it is JSON, 413 over the size limit, 400 if malformed."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"request body must be JSON (Content-Type: application/json), got {request.content_type!r}"
        )
    raw = await request.read()  # aiohttp enforces client_max_size here (413)
    if not raw:
        raise ValidationError(None, "request body is empty; expected a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(None, f"request body is not valid JSON: {exc}") from None


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
