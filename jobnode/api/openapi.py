"""The OpenAPI 3.1 document for the API; a test keeps it in step with the routes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from jobnode import __version__
from jobnode.jobs import MAX_IDEMPOTENCY_KEY_LEN, MAX_TYPE_LEN, STATUSES, SUBMIT_FIELDS


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
            }
        },
    },
    "JobSubmission": {
        "type": "object",
        "required": ["type"],
        "additionalProperties": False,
        "properties": {
            "type": {"type": "string", "minLength": 1, "maxLength": MAX_TYPE_LEN},
            "priority": {
                "oneOf": [
                    {"type": "integer", "minimum": 0, "maximum": 10},
                    {"type": "string", "enum": ["low", "normal", "high"]},
                ]
            },
            "payload": {"type": "object"},
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 100},
            "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 604800},
            "scheduled_at": {"type": "string", "format": "date-time"},
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LEN},
        },
    },
    "Job": {
        "type": "object",
        "required": ["id", "type", "status", "priority", "payload", "attempts", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string"},
            "status": {"type": "string", "enum": list(STATUSES)},
            "priority": {"type": "integer"},
            "payload": {"type": "object"},
            "attempts": {"type": "integer"},
            "max_retries": {"type": "integer"},
            "timeout_seconds": {"type": "number"},
            "scheduled_at": NULLABLE_TIME,
            "idempotency_key": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "started_at": NULLABLE_TIME,
            "finished_at": NULLABLE_TIME,
            "node_id": {"type": ["string", "null"]},
            "worker_id": {"type": ["string", "null"]},
            "result": {},
            "error": {"type": ["string", "null"]},
            "errors": {"type": "array", "items": {"type": "object"}},
            "submitted_by": {"type": ["string", "null"]},
        },
    },
    "JobList": {
        "type": "object",
        "required": ["jobs", "count", "next_cursor"],
        "properties": {
            "jobs": {"type": "array", "items": _ref("Job")},
            "count": {"type": "integer"},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "Object": {"type": "object"},
}

ERRORS = {
    "400": "invalid input (the error names the field)",
    "404": "no such job or route",
    "409": "the job's state forbids it",
    "413": "body too large",
    "415": "body is not JSON",
    "503": "a dependency (Redis or MongoDB) is unavailable",
}

JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}


def _op(summary: str, ok: str, schema: str, *, body: str | None = None, params: list[Any] | None = None,
        errors: tuple[str, ...] = ("400", "503")) -> dict[str, Any]:
    responses: dict[str, Any] = {
        ok: {"description": "success", "content": {"application/json": {"schema": _ref(schema)}}}
    }
    for status in errors:
        responses[status] = {
            "description": ERRORS[status],
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return op


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


PATHS: dict[str, Any] = {
    "/api/v1/jobs": {
        "post": _op("Submit a job", "201", "Job", body="JobSubmission", errors=("400", "413", "415", "503")),
        "get": _op(
            "List jobs, newest first",
            "200",
            "JobList",
            params=[
                _query("status", {"type": "string", "enum": list(STATUSES)}),
                _query("type", {"type": "string", "maxLength": MAX_TYPE_LEN}),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                _query("cursor", {"type": "string"}),
            ],
        ),
    },
    "/api/v1/jobs/batch": {
        "post": _op("Submit up to MAX_BATCH_SIZE jobs at once", "201", "Object", body="Object",
                    errors=("400", "413", "415", "503")),
    },
    "/api/v1/jobs/{job_id}": {
        "get": _op("One job", "200", "Job", params=[JOB_ID], errors=("400", "404", "503")),
        "delete": _op("Cancel if needed and delete the record", "200", "Object", params=[JOB_ID],
                      errors=("400", "404", "503")),
    },
    "/api/v1/jobs/{job_id}/cancel": {
        "post": _op("Cancel a job that has not finished", "200", "Job", params=[JOB_ID],
                    errors=("400", "404", "409", "503")),
    },
    "/api/v1/jobs/{job_id}/retry": {
        "post": _op("Run a failed or cancelled job again", "200", "Job", params=[JOB_ID],
                    errors=("400", "404", "409", "503")),
    },
    "/api/v1/stats": {"get": _op("Job counts, queue depths, throughput, leader", "200", "Object", errors=("503",))},
    "/api/v1/workers": {"get": _op("Every worker in the cluster", "200", "Object", errors=("503",))},
    "/health": {
        "get": {
            "summary": "200 when the node can serve, 503 otherwise, with per-dependency checks",
            "responses": {
                "200": {"description": "healthy", "content": {"application/json": {"schema": _ref("Object")}}},
                "503": {"description": "unhealthy", "content": {"application/json": {"schema": _ref("Object")}}},
            },
        }
    },
    "/api/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}},
}



def openapi_document(app: web.Application | None = None) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "jobnode", "version": __version__},
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }
