"""Routes for jobs: submit (one or a batch), read, list, cancel, retry, delete."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from jobnode.api.access import access, owner_filter, principal_of, require_job_type_roles
from jobnode.auth.roles import ADMIN_ACCESS, USER_ACCESS
from jobnode.api.appkeys import JOB_SERVICE, SETTINGS
from jobnode.api.bodies import JOB_ID, int_query, job_id_param, read_json
from jobnode.api.request_ids import request_id_of
from jobnode.core.errors import ValidationError
from jobnode.core.job import STATUSES
from jobnode.core.queues import QUEUE_NAME, QUEUE_NAME_RULE
from jobnode.core.submission import MAX_IDEMPOTENCY_KEY_LEN, MAX_TYPE_LEN, parse_submission

routes = web.RouteTableDef()

DEFAULT_PAGE, MAX_PAGE = 50, 1000


def _submitter(request: web.Request) -> str | None:
    principal = principal_of(request)  # None when auth is off
    return principal.subject if principal else None


@routes.post("/api/v1/jobs")
@access(USER_ACCESS)
async def submit(request: web.Request) -> web.Response:
    settings, service = request.app[SETTINGS], request.app[JOB_SERVICE]
    body = await read_json(request)
    await service.catalog.refresh()
    spec = parse_submission(
        body,
        known_types=service.known_types,
        defaults=settings.job_defaults,
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    require_job_type_roles(request, [spec.type])
    [spec] = service.catalog.admit([spec], [""])
    outcome = await service.submit(spec, submitted_by=_submitter(request), owner=owner_filter(request),
                                   request_id=request_id_of(request))
    status = 201 if outcome.created else 200
    location = {"Location": f"/api/v1/jobs/{outcome.job.id}"}
    return web.json_response(outcome.job.to_json(), status=status, headers=location)


@routes.post("/api/v1/jobs/batch")
@access(USER_ACCESS)
async def submit_batch(request: web.Request) -> web.Response:
    settings, service = request.app[SETTINGS], request.app[JOB_SERVICE]
    body = await read_json(request)
    if isinstance(body, dict) and set(body) - {"jobs"}:
        extra = sorted(set(body) - {"jobs"})
        raise ValidationError(extra[0], f"unknown field {extra[0]!r}; a batch is {{\"jobs\": [...]}}",
                              details={"unknown_fields": extra})
    items = body.get("jobs") if isinstance(body, dict) else body
    if not isinstance(items, list) or not items:
        raise ValidationError("jobs", 'must be a non-empty array of jobs, e.g. {"jobs": [{"type": "echo"}]}')
    if len(items) > settings.max_batch_size:
        raise ValidationError("jobs", f"at most {settings.max_batch_size} jobs per batch, got {len(items)}")
    await service.catalog.refresh()
    prefixes = [f"jobs[{i}]." for i in range(len(items))]
    specs = [
        parse_submission(item, known_types=service.known_types, defaults=settings.job_defaults, field_prefix=prefix)
        for item, prefix in zip(items, prefixes)
    ]
    require_job_type_roles(request, [spec.type for spec in specs])
    specs = service.catalog.admit(specs, prefixes)
    keys = [spec.idempotency_key for spec in specs if spec.idempotency_key]
    if len(keys) != len(set(keys)):
        raise ValidationError("jobs", "two jobs in one batch carry the same idempotency_key")
    outcomes = await service.submit_many(specs, submitted_by=_submitter(request), owner=owner_filter(request),
                                         request_id=request_id_of(request))
    jobs = [o.job.to_json() for o in outcomes]
    return web.json_response({"jobs": jobs, "count": len(jobs)}, status=201)


@routes.get("/api/v1/types")
@access(USER_ACCESS)
async def list_types(request: web.Request) -> web.Response:
    rows = await request.app[JOB_SERVICE].catalog.describe()
    return web.json_response({"types": rows, "count": len(rows)})


@routes.get("/api/v1/jobs")
@access(USER_ACCESS)
async def list_jobs(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        raise ValidationError("status", f"must be one of {', '.join(STATUSES)}")
    type_ = request.query.get("type") or None
    if type_ is not None and len(type_) > MAX_TYPE_LEN:
        raise ValidationError("type", f"must be at most {MAX_TYPE_LEN} characters")
    queue = request.query.get("queue") or None
    if queue is not None and not QUEUE_NAME.fullmatch(queue):
        raise ValidationError("queue", f"must be a queue name: {QUEUE_NAME_RULE}")
    job_id = request.query.get("id") or None
    if job_id is not None and not JOB_ID.match(job_id):
        raise ValidationError("id", "must be a job id: 32 lowercase hexadecimal characters")
    key = request.query.get("idempotency_key") or None
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY_LEN:
        raise ValidationError("idempotency_key", f"must be at most {MAX_IDEMPOTENCY_KEY_LEN} characters")
    limit = int_query(request, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
    jobs, next_cursor = await request.app[JOB_SERVICE].list(
        status=status, type_=type_, queue=queue, job_id=job_id, idempotency_key=key, limit=limit,
        cursor=request.query.get("cursor") or None, owner=owner_filter(request),
    )
    body: dict[str, Any] = {"jobs": [j.to_json() for j in jobs], "count": len(jobs), "next_cursor": next_cursor}
    return web.json_response(body)


@routes.get("/api/v1/jobs/{job_id}")
@access(USER_ACCESS)
async def get_job(request: web.Request) -> web.Response:
    job = await request.app[JOB_SERVICE].get(job_id_param(request), owner=owner_filter(request))
    return web.json_response(job.to_json())


@routes.post("/api/v1/jobs/{job_id}/cancel")
@access(USER_ACCESS)
async def cancel_job(request: web.Request) -> web.Response:
    job = await request.app[JOB_SERVICE].cancel(job_id_param(request), owner=owner_filter(request))
    return web.json_response(job.to_json())


@routes.post("/api/v1/jobs/{job_id}/retry")
@access(ADMIN_ACCESS)
async def retry_job(request: web.Request) -> web.Response:
    job = await request.app[JOB_SERVICE].retry(job_id_param(request))
    return web.json_response(job.to_json())


@routes.delete("/api/v1/jobs/{job_id}")
@access(ADMIN_ACCESS)
async def delete_job(request: web.Request) -> web.Response:
    job_id = job_id_param(request)
    await request.app[JOB_SERVICE].delete(job_id)
    return web.json_response({"id": job_id, "deleted": True})
