"""Routes for jobs: submit (one or a batch), read, list, cancel, retry, delete."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from jobnode.api.appkeys import SERVICE, SETTINGS
from jobnode.api.bodies import int_query, job_id_param, read_json
from jobnode.api.request_ids import request_id_of
from jobnode.errors import ValidationError
from jobnode.jobs import MAX_TYPE_LEN, STATUSES, parse_submission

routes = web.RouteTableDef()

DEFAULT_PAGE, MAX_PAGE = 50, 1000


def _submitter(request: web.Request) -> str | None:
    return request.get("subject")  # set by the auth middleware when auth is on


@routes.post("/api/v1/jobs")
async def submit(request: web.Request) -> web.Response:
    settings, service = request.app[SETTINGS], request.app[SERVICE]
    body = await read_json(request)
    spec = parse_submission(
        body,
        known_types=service.known_types,
        defaults=settings.job_defaults,
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    outcome = await service.submit(spec, submitted_by=_submitter(request), request_id=request_id_of(request))
    status = 201 if outcome.created else 200
    location = {"Location": f"/api/v1/jobs/{outcome.job.id}"}
    return web.json_response(outcome.job.to_json(), status=status, headers=location)


@routes.post("/api/v1/jobs/batch")
async def submit_batch(request: web.Request) -> web.Response:
    settings, service = request.app[SETTINGS], request.app[SERVICE]
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
    specs = [
        parse_submission(
            item, known_types=service.known_types, defaults=settings.job_defaults, field_prefix=f"jobs[{i}]."
        )
        for i, item in enumerate(items)
    ]
    keys = [spec.idempotency_key for spec in specs if spec.idempotency_key]
    if len(keys) != len(set(keys)):
        raise ValidationError("jobs", "two jobs in one batch carry the same idempotency_key")
    outcomes = await service.submit_many(specs, submitted_by=_submitter(request),
                                         request_id=request_id_of(request))
    jobs = [o.job.to_json() for o in outcomes]
    return web.json_response({"jobs": jobs, "count": len(jobs)}, status=201)


@routes.get("/api/v1/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        raise ValidationError("status", f"must be one of {', '.join(STATUSES)}")
    type_ = request.query.get("type") or None
    if type_ is not None and len(type_) > MAX_TYPE_LEN:
        raise ValidationError("type", f"must be at most {MAX_TYPE_LEN} characters")
    limit = int_query(request, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
    jobs, next_cursor = await request.app[SERVICE].list(
        status=status, type_=type_, limit=limit, cursor=request.query.get("cursor") or None
    )
    body: dict[str, Any] = {"jobs": [j.to_json() for j in jobs], "count": len(jobs), "next_cursor": next_cursor}
    return web.json_response(body)


@routes.get("/api/v1/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    job = await request.app[SERVICE].get(job_id_param(request))
    return web.json_response(job.to_json())


@routes.post("/api/v1/jobs/{job_id}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    job = await request.app[SERVICE].cancel(job_id_param(request))
    return web.json_response(job.to_json())


@routes.post("/api/v1/jobs/{job_id}/retry")
async def retry_job(request: web.Request) -> web.Response:
    job = await request.app[SERVICE].retry(job_id_param(request))
    return web.json_response(job.to_json())


@routes.delete("/api/v1/jobs/{job_id}")
async def delete_job(request: web.Request) -> web.Response:
    job_id = job_id_param(request)
    await request.app[SERVICE].delete(job_id)
    return web.json_response({"id": job_id, "deleted": True})
