"""The job routes on a real node: lifecycle, cancel, retry, delete, idempotency, listing."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from jobnode.processors.registry import PermanentError
from tests.harness import registry_with, start_node  # noqa: F401  (fixture)
from tests.waiting import wait_until

TERMINAL = {"completed", "failed", "cancelled"}


async def submit(client, body, expect=201, **kwargs):
    resp = await client.post("/api/v1/jobs", json=body, **kwargs)
    data = await resp.json()
    assert resp.status == expect, data
    return data


async def job_when(client, job_id, predicate, message, timeout_s=15.0):
    async def check():
        resp = await client.get(f"/api/v1/jobs/{job_id}")
        job = await resp.json()
        return job if predicate(job) else None

    return await wait_until(check, timeout_s=timeout_s, message=message)


async def finished(client, job_id, timeout_s=15.0):
    return await job_when(client, job_id, lambda j: j["status"] in TERMINAL, f"job {job_id} never finished", timeout_s)


async def test_job_runs_to_completion_and_is_recorded(start_node, mongo_db):
    client = await start_node()
    resp = await client.post("/api/v1/jobs", json={"type": "echo", "payload": {"hello": "world"}})
    assert resp.status == 201
    job = await resp.json()
    assert resp.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert job["status"] == "pending" and job["priority"] == 5 and job["max_retries"] == 3

    done = await finished(client, job["id"])
    assert done["status"] == "completed"
    assert done["result"] == {"hello": "world"}
    assert done["attempts"] == 1
    assert done["node_id"] == "node-1" and done["worker_id"].startswith("node-1/")
    assert done["started_at"] <= done["finished_at"]

    # MongoDB (the system of record) catches up through the outbox.
    async def recorded():
        doc = await mongo_db.jobs.find_one({"_id": job["id"]})
        return doc and doc["status"] == "completed"

    await wait_until(recorded, timeout_s=10, message="completion never reached MongoDB")


async def test_priority_names_and_defaults_are_accepted(start_node):
    client = await start_node(WORKER_COUNT="0")
    high = await submit(client, {"type": "echo", "priority": "high"})
    low = await submit(client, {"type": "echo", "priority": "LOW", "max_retries": 0, "timeout_seconds": 2.5})
    assert (high["priority"], low["priority"]) == (10, 1)
    assert low["max_retries"] == 0 and low["timeout_seconds"] == 2.5


async def test_idempotency_key_returns_the_first_job(start_node):
    client = await start_node(WORKER_COUNT="0")
    first = await submit(client, {"type": "echo", "idempotency_key": "order-42"})
    again = await submit(client, {"type": "echo", "payload": {"x": 1}, "idempotency_key": "order-42"}, expect=200)
    assert again["id"] == first["id"]
    by_header = await submit(client, {"type": "echo"}, expect=200, headers={"Idempotency-Key": "order-42"})
    assert by_header["id"] == first["id"]
    other = await submit(client, {"type": "echo", "idempotency_key": "order-43"})
    assert other["id"] != first["id"]


async def test_concurrent_submits_with_one_key_create_one_job(start_node, mongo_db):
    client = await start_node(WORKER_COUNT="0")
    bodies = [{"type": "echo", "idempotency_key": "same"} for _ in range(20)]
    responses = await asyncio.gather(*(client.post("/api/v1/jobs", json=b) for b in bodies))
    ids = {(await r.json())["id"] for r in responses}
    assert len(ids) == 1
    assert sorted(r.status for r in responses).count(201) == 1
    assert await mongo_db.jobs.count_documents({"idempotency_key": "same"}) == 1


async def test_batch_submit(start_node):
    client = await start_node()
    resp = await client.post("/api/v1/jobs/batch", json={"jobs": [{"type": "echo", "payload": {"i": i}} for i in range(50)]})
    assert resp.status == 201
    body = await resp.json()
    assert body["count"] == 50 and len({j["id"] for j in body["jobs"]}) == 50
    for job in body["jobs"][::10]:
        assert (await finished(client, job["id"]))["status"] == "completed"


async def test_delayed_job_does_not_start_before_its_time(start_node):
    client = await start_node()
    at = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    job = await submit(client, {"type": "echo", "scheduled_at": at.isoformat()})
    now_job = await submit(client, {"type": "echo"})
    assert (await finished(client, now_job["id"]))["status"] == "completed"
    assert (await client.get(f"/api/v1/jobs/{job['id']}").__aenter__()).status == 200
    done = await finished(client, job["id"])
    assert done["status"] == "completed"
    started = datetime.fromisoformat(done["started_at"].replace("Z", "+00:00"))
    assert started >= at.replace(microsecond=at.microsecond // 1000 * 1000)


async def test_failures_retry_then_dead_letter_then_admin_retry(start_node):
    calls: list[int] = []

    async def flaky(job):
        calls.append(job.attempts)
        if not job.payload.get("heal") or len(calls) <= 3:
            raise RuntimeError(f"boom {len(calls)}")
        return {"ok": True}

    client = await start_node(processors=registry_with(flaky=flaky))
    job = await submit(client, {"type": "flaky", "max_retries": 2, "payload": {"heal": True}})
    failed = await finished(client, job["id"])
    assert failed["status"] == "failed"
    assert failed["attempts"] == 3
    assert [e["attempt"] for e in failed["errors"]] == [1, 2, 3]
    assert failed["error"] == "RuntimeError: boom 3"
    stats = await (await client.get("/api/v1/stats")).json()
    assert stats["queue"]["dead_letter"] == 1

    resp = await client.post(f"/api/v1/jobs/{job['id']}/retry")
    assert resp.status == 200, await resp.json()
    done = await finished(client, job["id"])
    assert done["status"] == "completed" and done["result"] == {"ok": True}
    stats = await (await client.get("/api/v1/stats")).json()
    assert stats["queue"]["dead_letter"] == 0
    # A job that is not failed cannot be retried.
    resp = await client.post(f"/api/v1/jobs/{job['id']}/retry")
    assert resp.status == 409


async def test_permanent_error_skips_retries(start_node):
    async def refuses(job):
        raise PermanentError("bad input", field="payload.x")

    client = await start_node(processors=registry_with(refuses=refuses))
    job = await submit(client, {"type": "refuses", "max_retries": 5})
    done = await finished(client, job["id"])
    assert done["status"] == "failed" and done["attempts"] == 1


async def test_timeout_counts_as_a_failure(start_node):
    client = await start_node()
    job = await submit(client, {"type": "sleep", "payload": {"seconds": 5}, "timeout_seconds": 0.1, "max_retries": 1})
    done = await finished(client, job["id"])
    assert done["status"] == "failed" and done["attempts"] == 2
    assert "timed out" in done["error"]


async def test_cancel_pending_and_running_jobs(start_node):
    client = await start_node(WORKER_COUNT="1", WORKER_PREFETCH="0")
    running = await submit(client, {"type": "sleep", "payload": {"seconds": 30}})
    await job_when(client, running["id"], lambda j: j["status"] == "running", "never started")
    queued = await submit(client, {"type": "echo"})

    resp = await client.post(f"/api/v1/jobs/{queued['id']}/cancel")
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"
    resp = await client.post(f"/api/v1/jobs/{running['id']}/cancel")
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"

    # The worker gives the running job up and is free for the next one.
    after = await submit(client, {"type": "echo"})
    assert (await finished(client, after["id"]))["status"] == "completed"
    assert (await (await client.get(f"/api/v1/jobs/{running['id']}")).json())["status"] == "cancelled"
    again = await client.post(f"/api/v1/jobs/{running['id']}/cancel")
    assert again.status == 200 and (await again.json())["status"] == "cancelled"
    resp = await client.post(f"/api/v1/jobs/{after['id']}/cancel")
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "conflict"


async def test_delete_removes_the_record(start_node, mongo_db):
    client = await start_node(WORKER_COUNT="0")
    job = await submit(client, {"type": "echo"})
    resp = await client.delete(f"/api/v1/jobs/{job['id']}")
    assert resp.status == 200 and (await resp.json()) == {"id": job["id"], "deleted": True}
    assert (await client.get(f"/api/v1/jobs/{job['id']}")).status == 404
    assert await mongo_db.jobs.count_documents({"_id": job["id"]}) == 0
    assert (await client.delete(f"/api/v1/jobs/{job['id']}")).status == 404


async def test_list_newest_first_with_cursor_and_filters(start_node):
    client = await start_node(WORKER_COUNT="0")
    ids = [(await submit(client, {"type": "echo" if i % 2 else "sleep", "payload": {"seconds": 0}}))["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = await (await client.get("/api/v1/jobs", params=params)).json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    echoes = await (await client.get("/api/v1/jobs", params={"type": "echo"})).json()
    assert [j["id"] for j in echoes["jobs"]] == [i for n, i in enumerate(reversed(ids)) if (6 - n) % 2]
    pending = await (await client.get("/api/v1/jobs", params={"status": "pending"})).json()
    assert pending["count"] == 7


async def test_workers_show_the_job_they_run(start_node):
    client = await start_node(WORKER_COUNT="2")
    job = await submit(client, {"type": "sleep", "payload": {"seconds": 30}})
    await job_when(client, job["id"], lambda j: j["status"] == "running", "never started")
    workers = (await (await client.get("/api/v1/workers")).json())["workers"]
    busy = [w for w in workers if w["state"] == "busy"]
    assert len(busy) == 1 and busy[0]["current_job"] == job["id"]
    assert [w["current_job"] for w in workers if w["state"] == "idle"] == [None]
    await client.post(f"/api/v1/jobs/{job['id']}/cancel")


async def test_stats_and_workers_keep_the_compatibility_fields(start_node):
    client = await start_node(WORKER_COUNT="3")
    job = await submit(client, {"type": "echo"})
    await finished(client, job["id"])
    stats = await (await client.get("/api/v1/stats")).json()
    for key in ("pending", "running", "completed", "failed"):
        assert key in stats["jobs"]
    for key in ("pending", "processing", "completed", "failed", "delayed"):
        assert key in stats["queue"]
    assert stats["node"] == {**stats["node"], "id": "node-1", "is_leader": True, "strategy": "round_robin", "worker_count": 3}
    workers = await (await client.get("/api/v1/workers")).json()
    assert workers["count"] == 3
    assert {w["node_id"] for w in workers["workers"]} == {"node-1"}
    assert sum(w["processed"] for w in workers["workers"]) == 1
    health = await client.get("/health")
    body = await health.json()
    assert health.status == 200 and body["status"] == "ok" and body["node_id"] == "node-1"
    assert body["checks"]["redis"]["ok"] and body["checks"]["mongodb"]["ok"]
