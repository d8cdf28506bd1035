"""The OpenAPI 3.1 document for the API; tests keep it in step with the routes and the validator."""

from __future__ import annotations

import re

from typing import Any

from aiohttp import web

from jobnode import __version__
from jobnode.api.access import access_of
from jobnode.api.appkeys import JOB_SERVICE, SETTINGS
from jobnode.api.jobs_routes import DEFAULT_PAGE, MAX_PAGE
from jobnode.auth.roles import ROLES
from jobnode.core.job import DURABILITIES, STATUSES
from jobnode.core.queues import QUEUE_NAME
from jobnode.core.submission import (
    IDEMPOTENCY_KEY_HEADER,
    MAX_IDEMPOTENCY_KEY_LEN,
    MAX_PAYLOAD_DEPTH,
    MAX_PRIORITY,
    MAX_RETRIES_LIMIT,
    MAX_TIMEOUT_S,
    MAX_TYPE_LEN,
    MIN_PRIORITY,
    PRIORITY_NAMES,
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(type_: str, **more: Any) -> dict[str, Any]:
    return {"type": [type_, "null"], **more}


TIME = {"type": "string", "format": "date-time"}
NULLABLE_TIME = _nullable("string", format="date-time")
JOB_ID_PATTERN = "^[0-9a-f]{32}$"

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"description": "for invalid input, an object whose `field` names the bad part"},
                },
            }
        },
    },
    "JobSubmission": {
        "type": "object",
        "required": ["type"],
        "additionalProperties": False,
        "properties": {
            "type": {"type": "string", "minLength": 1, "maxLength": MAX_TYPE_LEN,
                     "description": "a registered processor type; an unknown one is refused with the list"},
            "priority": {
                "oneOf": [
                    {"type": "integer", "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY},
                    {"type": "string", "enum": list(PRIORITY_NAMES)},
                ],
                "description": "higher runs first; names are case-insensitive",
            },
            "payload": {"type": "object",
                        "description": f"at most {MAX_PAYLOAD_DEPTH} levels deep; integers fit in 64 bits"},
            "max_retries": {"type": "integer", "minimum": 0, "maximum": MAX_RETRIES_LIMIT},
            "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S},
            "scheduled_at": {"type": "string", "format": "date-time",
                             "description": "ISO-8601; without a zone it is UTC"},
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LEN},
            "queue": {"type": "string", "pattern": f"^{QUEUE_NAME.pattern}$",
                      "description": "the queue to wait in; default: the one its type declares (else `default`); "
                                     "an unknown queue is refused with the list"},
            "durability": {"type": "string", "enum": list(DURABILITIES),
                           "description": "when the submission is acknowledged: `store` once MongoDB holds it, "
                                          "`queue` once Redis does (faster; a Redis crash can lose the last "
                                          "appendfsync window). Default: its type's, else the node's DURABILITY. "
                                          "`queue` with an idempotency key is refused"},
        },
    },
    "JobType": {
        "type": "object",
        "required": ["type", "queue", "nodes", "payload_schema", "doc"],
        "properties": {
            "type": {"type": "string"},
            "queue": {"type": "string", "description": "where its jobs go when the submitter names no queue"},
            "nodes": {"type": "array", "items": {"type": "string"},
                      "description": "the nodes whose workers run it now"},
            "payload_schema": {"description": "JSON Schema of its payload; null: any object"},
            "doc": {"type": "string"},
            "durability": {"type": ["string", "null"], "enum": [*DURABILITIES, None],
                           "description": "its jobs' durability when the submission names none; null: the node's"},
        },
    },
    "JobTypeList": {
        "type": "object",
        "required": ["types", "count"],
        "properties": {"types": {"type": "array", "items": _ref("JobType")}, "count": {"type": "integer"}},
    },
    "Job": {
        "type": "object",
        "required": [
            "id", "type", "status", "priority", "payload", "attempts", "max_retries", "timeout_seconds",
            "scheduled_at", "idempotency_key", "created_at", "updated_at", "started_at", "finished_at",
            "node_id", "worker_id", "result", "error", "errors", "submitted_by", "request_id", "queue", "progress",
            "schedule", "scheduled_for",
            "durability",
        ],
        "properties": {
            "id": {"type": "string", "pattern": JOB_ID_PATTERN},
            "type": {"type": "string"},
            "queue": {"type": "string"},
            "durability": {"type": "string", "enum": list(DURABILITIES)},
            "status": {"type": "string", "enum": list(STATUSES)},
            "priority": {"type": "integer", "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY},
            "payload": {"type": "object"},
            "attempts": {"type": "integer", "minimum": 0},
            "max_retries": {"type": "integer"},
            "timeout_seconds": {"type": "number"},
            "scheduled_at": NULLABLE_TIME,
            "idempotency_key": _nullable("string"),
            "created_at": TIME,
            "updated_at": TIME,
            "started_at": NULLABLE_TIME,
            "finished_at": NULLABLE_TIME,
            "node_id": _nullable("string"),
            "worker_id": _nullable("string"),
            "result": {"description": "what the processor returned (any JSON value)"},
            "error": _nullable("string"),
            "errors": {"type": "array", "items": {"type": "object"}, "description": "one entry per failed attempt"},
            "submitted_by": _nullable("string"),
            "request_id": _nullable("string", description="X-Request-Id of the request that submitted the job"),
            "schedule": _nullable("string", description="the schedule that fired the job (null: submitted)"),
            "scheduled_for": {**NULLABLE_TIME, "description": "the schedule's fire time the job stands for"},
            "progress": {
                "type": ["object", "null"],
                "description": "the last progress the processor reported (null: none)",
                "properties": {"fraction": {"type": "number", "minimum": 0, "maximum": 1},
                               "message": {"type": "string"}, "at_ms": {"type": "integer"}},
            },
        },
    },
    "JobList": {
        "type": "object",
        "required": ["jobs", "count", "next_cursor"],
        "properties": {
            "jobs": {"type": "array", "items": _ref("Job")},
            "count": {"type": "integer"},
            "next_cursor": _nullable("string"),
        },
    },
    "JobBatch": {
        "type": "object",
        "required": ["jobs"],
        "properties": {"jobs": {"type": "array", "minItems": 1, "items": _ref("JobSubmission")}},
    },
    "JobBatchResult": {
        "type": "object",
        "required": ["jobs", "count"],
        "properties": {"jobs": {"type": "array", "items": _ref("Job")}, "count": {"type": "integer"}},
    },
    "Deleted": {
        "type": "object",
        "required": ["id", "deleted"],
        "properties": {"id": {"type": "string"}, "deleted": {"const": True}},
    },
    "Object": {"type": "object"},
    "Schedule": {
        "type": "object",
        "required": ["name", "cron", "every_seconds", "timezone", "job", "overlap", "catch_up",
                     "catch_up_window_seconds", "jitter_seconds", "paused", "next_fire_at", "last_fire_at",
                     "last_job_id", "created_at", "updated_at"],
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"},
            "cron": _nullable("string", description="5 fields, or 6 with seconds first"),
            "every_seconds": {"type": ["integer", "null"], "minimum": 1},
            "timezone": {"type": "string", "description": "IANA time zone the cron expression is read in"},
            "job": {"type": "object", "description": "the job template: type, payload, queue, priority, "
                                                     "max_retries, timeout"},
            "overlap": {"type": "string", "enum": ["skip", "queue", "allow"]},
            "catch_up": {"type": "string", "enum": ["none", "one", "all"]},
            "catch_up_window_seconds": {"type": "integer", "minimum": 1},
            "jitter_seconds": {"type": "number", "minimum": 0},
            "paused": {"type": "boolean"},
            "next_fire_at": NULLABLE_TIME,
            "last_fire_at": NULLABLE_TIME,
            "last_job_id": _nullable("string"),
            "created_at": TIME,
            "updated_at": TIME,
        },
    },
    "ScheduleList": {"type": "object", "required": ["schedules"],
                     "properties": {"schedules": {"type": "array", "items": _ref("Schedule")}}},
    "FlowLimit": {
        "type": "object",
        "required": ["scope", "name", "rate", "concurrency", "paused", "running", "waiting"],
        "properties": {
            "scope": {"type": "string", "enum": ["queue", "type", "user"]},
            "name": {"type": "string"},
            "rate": {"type": ["object", "null"], "properties": {
                "count": {"type": "integer", "minimum": 1}, "per": {"type": "string", "enum": ["second", "minute"]}}},
            "concurrency": {"type": ["integer", "null"], "minimum": 1},
            "paused": {"type": "boolean"},
            "running": {"type": "integer", "minimum": 0},
            "waiting": {"type": "integer", "minimum": 0, "description": "ready jobs the leader's last dispatch "
                                                                        "held back on this limit"},
        },
    },
    "FlowLimitList": {"type": "object", "required": ["limits"],
                      "properties": {"limits": {"type": "array", "items": _ref("FlowLimit")}}},
    "JobLogs": {
        "type": "object",
        "required": ["id", "lines", "count"],
        "properties": {
            "id": {"type": "string"},
            "lines": {"type": "array", "items": {
                "type": "object", "required": ["at", "attempt", "message"],
                "properties": {"at": TIME, "attempt": {"type": "integer"}, "message": {"type": "string"}}}},
            "count": {"type": "integer", "minimum": 0, "maximum": 100},
        },
    },
    "StreamToken": {
        "type": "object",
        "required": ["token", "expires_in", "role"],
        "properties": {
            "token": {"type": "string", "description": "open an event stream with ?access_token=<token>"},
            "expires_in": {"type": "integer", "description": "seconds the token may be used to open a stream"},
            "role": {"type": "string", "enum": list(ROLES)},
        },
    },
    "LoginRequest": {
        "type": "object",
        "required": ["username", "password"],
        "properties": {"username": {"type": "string", "minLength": 1}, "password": {"type": "string", "minLength": 1}},
    },
    "LoginAnswer": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in", "role"],
        "properties": {
            "access_token": {"type": "string", "description": "a JWT; send it as `Authorization: Bearer <token>`"},
            "token_type": {"const": "bearer"},
            "expires_in": {"type": "integer", "description": "seconds until the token expires (JWT_TTL)"},
            "role": {"type": "string", "enum": list(ROLES)},
        },
    },
}

ERRORS = {
    "400": "invalid input (details.field names it)",
    "404": "no such job, algorithm or route",
    "409": "the job's state forbids it",
    "413": "body too large",
    "415": "body is not JSON (Content-Type must be application/json)",
    "503": "a dependency (Redis or MongoDB) is unavailable, or the node is overloaded (with Retry-After)",
    "401": "no bearer token, or one that is malformed, expired or not signed by this cluster (AUTH_ENABLED=true)",
    "403": "the token's role is too low for this operation (AUTH_ENABLED=true)",
    "429": "too many failed logins for this user name; Retry-After says when to try again",
}

RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": "the client's bucket size (RATE_LIMIT_BURST, else RATE_LIMIT)",
    "X-RateLimit-Remaining": "whole requests left in the bucket",
    "X-RateLimit-Reset": "seconds until the bucket is full again",
}
# With RATE_LIMIT > 0 every operation but /health and the peer route may answer 429.
RATE_LIMITED = {
    "description": "rate limited (only with RATE_LIMIT > 0); Retry-After says when to come back",
    "headers": {
        "Retry-After": {"description": "seconds until the next request is allowed",
                        "schema": {"type": "integer", "minimum": 1}},
        **{name: {"description": text, "schema": {"type": "integer", "minimum": 0}}
           for name, text in RATE_LIMIT_HEADERS.items()},
    },
    "content": {"application/json": {"schema": _ref("Error")}},
}

JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": JOB_ID_PATTERN}}
IDEMPOTENCY_HEADER = {
    "name": IDEMPOTENCY_KEY_HEADER,
    "in": "header",
    "required": False,
    "description": "used when the body has no idempotency_key; a repeated key returns the first job (200)",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LEN},
}


def _op(operation_id: str, summary: str, ok: str, schema: str, *, body: str | None = None,
        params: list[Any] | None = None, errors: tuple[str, ...] = ("400", "503")) -> dict[str, Any]:
    responses: dict[str, Any] = {
        ok: {"description": "success", "content": {"application/json": {"schema": _ref(schema)}}}
    }
    for status in errors:
        responses[status] = {"description": ERRORS[status], "content": {"application/json": {"schema": _ref("Error")}}}
    responses["429"] = RATE_LIMITED
    op: dict[str, Any] = {"operationId": operation_id, "summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return op


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


BODY_ERRORS = ("400", "413", "415", "503")
SCHEDULE_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
LIMIT_PARAMS = [{"name": "scope", "in": "path", "required": True,
                 "schema": {"type": "string", "enum": ["queue", "type", "user"]}},
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
ONE_JOB_ERRORS = ("400", "404", "503")
STATE_ERRORS = ("400", "404", "409", "503")

def _submit_op() -> dict[str, Any]:
    op = _op("submitJob", "Submit a job (200 with the first job if the idempotency key was seen)", "201",
             "Job", body="JobSubmission", params=[IDEMPOTENCY_HEADER], errors=BODY_ERRORS)
    op["responses"]["200"] = {"description": "the idempotency key was seen before: the job it created",
                              "content": {"application/json": {"schema": _ref("Job")}}}
    return op


LAST_EVENT_ID = [
    {"name": "Last-Event-ID", "in": "header", "required": False,
     "description": "resume after this event id (what an EventSource sends when it reconnects)",
     "schema": {"type": "string", "pattern": "^[0-9]+(-[0-9]+)?$", "maxLength": 40}},
    _query("last_event_id", {"type": "string", "pattern": "^[0-9]+(-[0-9]+)?$", "maxLength": 40,
                             "description": "the same as the Last-Event-ID header, for a new EventSource"}),
    _query("access_token", {"type": "string", "description": "a stream token from POST /api/v1/events/token, "
                                                             "instead of an Authorization header"}),
]


def _stream_op(operation_id: str, summary: str, params: list[Any], errors: tuple[str, ...]) -> dict[str, Any]:
    """An operation whose answer is a text/event-stream (see docs/events.md)."""
    op = _op(operation_id, summary, "200", "Object", params=params, errors=errors)
    op["responses"]["200"] = {"description": "a stream of Server-Sent Events: `id:`, `event:` and JSON `data:`",
                              "content": {"text/event-stream": {"schema": {"type": "string"}}}}
    op["x-jobnode-stream"] = True  # it does not end by itself: fuzzers and generic clients beware
    return op


def _prefixes(name: str, what: str) -> dict[str, Any]:
    return _query(name, {"type": "string", "maxLength": 4096,
                         "description": f"{what} prefixes, comma-separated or repeated (any one matches)"})


PATHS: dict[str, Any] = {
    "/api/v1/jobs": {
        "post": _submit_op(),
        "get": _op(
            "listJobs",
            "List jobs, newest first",
            "200",
            "JobList",
            params=[
                _query("status", {"type": "string", "enum": list(STATUSES)}),
                _query("type", {"type": "string", "maxLength": MAX_TYPE_LEN}),
                _query("queue", {"type": "string", "pattern": f"^{QUEUE_NAME.pattern}$"}),
                _query("id", {"type": "string", "pattern": "^[0-9a-f]{32}$",
                              "description": "the job with this id (an empty page if none)"}),
                _query("idempotency_key", {"type": "string", "maxLength": MAX_IDEMPOTENCY_KEY_LEN,
                                           "description": "the job submitted with this key (an empty page if none)"}),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}),
                _query("cursor", {"type": "string", "description": "next_cursor of the previous page"}),
            ],
        ),
    },
    "/api/v1/jobs/batch": {
        "post": _op("submitJobs", "Submit up to MAX_BATCH_SIZE jobs at once, all or none", "201",
                    "JobBatchResult", body="JobBatch", errors=BODY_ERRORS),
    },
    "/api/v1/jobs/{job_id}": {
        "get": _op("getJob", "One job", "200", "Job", params=[JOB_ID], errors=ONE_JOB_ERRORS),
        "delete": _op("deleteJob", "Cancel if needed and delete the record", "200", "Deleted", params=[JOB_ID],
                      errors=ONE_JOB_ERRORS),
    },
    "/api/v1/jobs/{job_id}/cancel": {
        "post": _op("cancelJob", "Cancel a job that has not finished", "200", "Job", params=[JOB_ID],
                    errors=STATE_ERRORS),
    },
    "/api/v1/jobs/{job_id}/retry": {
        "post": _op("retryJob", "Run a failed or cancelled job again", "200", "Job", params=[JOB_ID],
                    errors=STATE_ERRORS),
    },
    "/api/v1/types": {
        "get": _op("listTypes", "Every job type in the cluster: queue, nodes running it, payload schema, description",
                   "200", "JobTypeList", errors=("503",))
    },
    "/api/v1/jobs/{job_id}/events": {
        "get": _stream_op("getJobEvents", "The job's events from its submission, ending after its terminal event",
                          [JOB_ID, *LAST_EVENT_ID], ONE_JOB_ERRORS),
    },
    "/api/v1/jobs/{job_id}/logs": {
        "get": _op("getJobLogs", "The job's last log lines (at most 100), oldest first", "200", "JobLogs",
                   params=[JOB_ID], errors=ONE_JOB_ERRORS),
    },
    "/api/v1/events": {
        "get": _stream_op("getEvents", "The cluster's events as they happen (what the caller's role may see)",
                          [_prefixes("type", "job type"), _prefixes("queue", "queue"), _prefixes("job", "job id"),
                           _prefixes("event", "event name"), *LAST_EVENT_ID], ("400", "503")),
    },
    "/api/v1/events/token": {
        "post": _op("createStreamToken", "A short-lived token that opens event streams (for EventSource)",
                    "200", "StreamToken", errors=("404",)),
    },
    "/api/v1/schedules": {
        "get": _op("listSchedules", "Every schedule", "200", "ScheduleList", errors=("503",)),
        "post": _op("createSchedule", "Create a schedule", "201", "Schedule", body="Object",
                    errors=(*BODY_ERRORS, "409")),
    },
    "/api/v1/schedules/{name}": {
        "get": _op("getSchedule", "One schedule", "200", "Schedule", params=[SCHEDULE_NAME], errors=("404", "503")),
        "put": _op("updateSchedule", "Change a schedule", "200", "Schedule", body="Object", params=[SCHEDULE_NAME],
                   errors=(*BODY_ERRORS, "404", "409")),
        "delete": {"operationId": "deleteSchedule", "summary": "Delete a schedule", "parameters": [SCHEDULE_NAME],
                   "responses": {"204": {"description": "deleted"},
                                 "404": {"description": ERRORS["404"],
                                         "content": {"application/json": {"schema": _ref("Error")}}},
                                 "429": RATE_LIMITED}},
    },
    "/api/v1/schedules/{name}/pause": {
        "post": _op("pauseSchedule", "Stop firing the schedule", "200", "Schedule", params=[SCHEDULE_NAME],
                    errors=("404", "409", "503")),
    },
    "/api/v1/schedules/{name}/resume": {
        "post": _op("resumeSchedule", "Fire the schedule again, from now on", "200", "Schedule",
                    params=[SCHEDULE_NAME], errors=("404", "409", "503")),
    },
    "/api/v1/limits": {"get": _op("listLimits", "Every flow limit, with its running and waiting jobs", "200",
                                  "FlowLimitList", errors=("503",))},
    "/api/v1/limits/{scope}/{name}": {
        "get": _op("getLimit", "One flow limit", "200", "FlowLimit", params=LIMIT_PARAMS, errors=("400", "404", "503")),
        "put": _op("putLimit", "Set a rate and/or concurrency limit (null: none)", "200", "FlowLimit", body="Object",
                   params=LIMIT_PARAMS, errors=BODY_ERRORS),
        "delete": {"operationId": "deleteLimit", "summary": "Remove a limit", "parameters": LIMIT_PARAMS,
                   "responses": {"204": {"description": "no limit any more"},
                                 "400": {"description": ERRORS["400"],
                                         "content": {"application/json": {"schema": _ref("Error")}}},
                                 "429": RATE_LIMITED}},
    },
    "/api/v1/limits/{scope}/{name}/pause": {
        "post": _op("pauseLimit", "Start no more jobs of this queue, type or user", "200", "FlowLimit",
                    params=LIMIT_PARAMS, errors=("400", "503")),
    },
    "/api/v1/limits/{scope}/{name}/resume": {
        "post": _op("resumeLimit", "Start its jobs again", "200", "FlowLimit", params=LIMIT_PARAMS,
                    errors=("400", "503")),
    },
    "/api/v1/stats": {
        "get": _op("getStats", "Job counts, queue depths, throughput, leader", "200", "Object", errors=("503",))
    },
    "/api/v1/queues": {"get": _op(
        "listQueues", "Each queue's depth by state and priority band, unroutable jobs, and the last hour of "
        "throughput as [epoch_s, completed_per_s] points", "200", "Object", errors=("503",))},
    "/ui": {"get": {"operationId": "consoleRedirect", "summary": "Redirects to the console at /ui/",
                    "tags": ["console"], "responses": {"308": {"description": "to /ui/"}}}},
    "/ui/{path}": {"get": {
        "operationId": "getConsoleFile", "summary": "The web console (index.html for an empty path) and its files",
        "tags": ["console"],
        "parameters": [{"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "the file", "content": {"text/html": {"schema": {"type": "string"}}}},
                      "304": {"description": "unchanged since the ETag the browser sent"},
                      "404": {"description": ERRORS["404"],
                              "content": {"application/json": {"schema": _ref("Error")}}}},
    }},
    "/api/v1/workers": {"get": _op("listWorkers", "Every worker in the cluster", "200", "Object", errors=("503",))},
    "/api/v1/leader": {"get": _op("getLeader", "The leader this node sees: id, address, term, algorithm, since",
                                  "200", "Object", errors=("503",))},
    "/api/v1/nodes": {"get": _op("listNodes", "Every node: id, address, role, health, last heartbeat, term",
                                 "200", "Object", errors=("503",))},
    "/api/v1/cluster": {"get": _op("getCluster", "Cluster size, leader node, algorithm, nodes, and the members "
                                   "this node's election counts", "200", "Object", errors=("503",))},
    # Served, it stops the node that answered: fuzzers and probes must not call it as admin.
    "/api/v1/cluster/leave": {"post": {**_op(
        "leaveCluster", "This node leaves the membership (waiting up to LEAVE_TIMEOUT), then stops serving", "202",
        "Object", errors=("409", "503")), "x-jobnode-stops-node": True}},
    "/api/v1/cluster/members/{node_id}": {"delete": _op(
        "removeMember", "Remove a node gone for good: 200 once the change is committed, 202 while under way", "200",
        "Object", params=[{"name": "node_id", "in": "path", "required": True,
                           "schema": {"type": "string", "maxLength": 256}}], errors=("404", "409", "503"))},
    "/api/v1/election": {"get": _op("getElection", "This node's view of the election", "200", "Object", errors=())},
    "/api/v1/elections": {"get": _op("listElections", "Leader-change history, newest first", "200", "Object",
                                     params=[_query("limit", {"type": "integer", "minimum": 1, "maximum": 1000})])},
    "/api/v1/election/algorithms": {"get": _op("listAlgorithms", "The election algorithms and current settings",
                                               "200", "Object", errors=())},
    "/api/v1/election/algorithms/{name}": {"get": _op(
        "getAlgorithm", "One election algorithm: what it does, guarantees, failure modes, parameters", "200",
        "Object", params=[{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
        errors=("404",))},
    "/internal/v1/election": {"post": {
        "operationId": "peerElectionMessage",
        "summary": "Election traffic between nodes; requests must be signed with CLUSTER_SECRET",
        "tags": ["internal"],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Object")}}},
        "responses": {
            "204": {"description": "accepted"},
            "400": {"description": ERRORS["400"], "content": {"application/json": {"schema": _ref("Error")}}},
            "401": {"description": "not signed with the cluster secret",
                    "content": {"application/json": {"schema": _ref("Error")}}},
        },
    }},
    "/auth/login": {"post": _op(
        "login", "Exchange a user name and password for a bearer token (AUTH_ENABLED=true; 404 when off)", "200",
        "LoginAnswer", body="LoginRequest", errors=("400", "401", "404", "413", "415", "429", "503"))},
    "/health": {
        "get": {
            "operationId": "getHealth",
            "summary": "200 when the node can serve, 503 otherwise, with per-dependency checks",
            "responses": {
                "200": {"description": "healthy", "content": {"application/json": {"schema": _ref("Object")}}},
                "503": {"description": "unhealthy", "content": {"application/json": {"schema": _ref("Object")}}},
            },
        }
    },
    "/api/v1/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": _ref("Object")}}},
                "429": RATE_LIMITED,
            },
        }
    },
}


def openapi_document(app: web.Application | None = None) -> dict[str, Any]:
    """The document; with an app, the batch limit is that node's MAX_BATCH_SIZE and each
    operation's security comes from the access level its route declares; once the app has
    started, the job types are those its processors run."""
    schemas = SCHEMAS
    if app is not None and SETTINGS in app:
        batch = {**SCHEMAS["JobBatch"]}
        jobs = {**batch["properties"]["jobs"], "maxItems": app[SETTINGS].max_batch_size}
        schemas = {**SCHEMAS, "JobBatch": {**batch, "properties": {"jobs": jobs}}}
    if app is not None and JOB_SERVICE in app:
        # The types this node can run: anything else is refused at submit, so say so here.
        submission = {**schemas["JobSubmission"]}
        service = app[JOB_SERVICE]
        job_type = {**submission["properties"]["type"], "enum": sorted(service.known_types)}
        submission = {**submission, "properties": {**submission["properties"], "type": job_type}}
        # Each type's payload schema as a component of its own, applied to the payload when
        # the submission names that type.
        payloads, rules = {}, []
        for name in sorted(service.known_types):
            spec = service.catalog.spec(name)
            if spec is None or spec.schema is None:
                continue
            component = "Payload." + re.sub(r"[^A-Za-z0-9._-]", "_", name)
            payloads[component] = spec.schema
            rules.append({"if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                          "then": {"properties": {"payload": _ref(component)}}})
        if rules:
            submission["allOf"] = rules
        schemas = {**schemas, **payloads, "JobSubmission": submission}
    return {
        "openapi": "3.1.0",
        "info": {"title": "jobnode", "version": __version__,
                 "description": "Distributed job processing: submit, track, cancel and retry jobs."},
        "paths": PATHS if app is None else with_access(PATHS, app),
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
    }


SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "a token from POST /auth/login; needed only on nodes with AUTH_ENABLED=true"},
}


def with_access(paths: dict[str, Any], app: web.Application) -> dict[str, Any]:
    """The paths with each operation's security, taken from the access level its route declares."""
    annotated = {path: dict(item) for path, item in paths.items()}
    for route in app.router.routes():
        resource = route.resource
        op = annotated.get(resource.canonical if resource else "", {}).get(route.method.lower())
        if op is None:
            continue
        level = access_of(route.handler)
        op = {**op, "x-jobnode-access": level.name}
        if level.is_public:
            op["security"] = []
        else:
            responses = {**op["responses"]}
            for status in ("401", "403"):
                responses[status] = {"description": ERRORS[status],
                                     "content": {"application/json": {"schema": _ref("Error")}}}
            op |= {"security": [{"bearerAuth": []}], "responses": responses}
        annotated[resource.canonical][route.method.lower()] = op
    return annotated
