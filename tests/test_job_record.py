"""The job record's one declaration (jobnode.core.record), as Python and the Lua scripts use it."""

from __future__ import annotations

import dataclasses
import re


from jobnode.core.job import Job, JobSpec, from_epoch_ms
from jobnode.core.record import (ENQUEUED, FIELDS, RESTORED, SNAPSHOT, TAKEN, decode_document, decode_snapshot,
                                  encode_document, group_names)
from jobnode.pipeline.outbox import to_snapshot
from jobnode.services.jobs import merge_live_state
from jobnode.storage.redis.queue import JobQueue
from jobnode.storage.redis.scripts import SCRIPT_NAMES, lua_prelude, script_source

LEASE_MS = 60_000
JOB_ATTRIBUTES = {f.name for f in dataclasses.fields(Job)}


async def start_one(queue: JobQueue, token: int, job: Job, worker: str = "w"):
    await queue.enqueue([job])
    await queue.register("node-a", 1, [worker])
    await queue.dispatch("leader", token, max_jobs=1, strategy="round_robin", lease_ms=LEASE_MS, share_every=0)
    return await queue.take(worker, LEASE_MS)


def lua_list(source: str, name: str) -> list[str]:
    match = re.search(rf"^local {name} = \{{(.*)\}}$", source, re.MULTILINE)
    assert match, f"{name} is not declared"
    return re.findall(r"'([a-z_]+)'", match.group(1))


# --- the declaration and the generated Lua --------------------------------------------


def test_the_generated_lua_lists_are_the_declared_groups():
    prelude = lua_prelude()
    assert lua_list(prelude, "SNAPSHOT") == list(group_names(SNAPSHOT))
    assert lua_list(prelude, "TAKE_FIELDS") == list(group_names(TAKEN))
    for name in SCRIPT_NAMES:
        assert script_source(name).startswith(prelude)


def test_no_lua_file_declares_a_field_list_of_its_own():
    for name in SCRIPT_NAMES:
        own = script_source(name)[len(lua_prelude()):]
        assert not re.search(r"^local (SNAPSHOT|TAKE_FIELDS)\b", own, re.MULTILINE), name


def test_every_grouped_field_carries_a_job_attribute_and_names_are_unique():
    assert len({f.name for f in FIELDS}) == len(FIELDS)
    for f in FIELDS:
        assert (f.attribute is None) == (not f.groups), f.name
        assert f.attribute is None or f.attribute in JOB_ATTRIBUTES, f.name


def test_the_hash_keeps_its_field_names():
    # Jobs already in a running Redis are read by these names: renaming one loses them.
    assert group_names(SNAPSHOT) == ("status", "rev", "attempts", "worker", "node", "started_ms", "finished_ms",
                                     "result", "error", "errors", "updated_ms", "type", "progress")
    assert set(group_names(TAKEN)) == {"type", "payload", "attempts", "max_retries", "timeout_ms", "priority", "rid",
                                       "queue", "tctx"}
    assert set(group_names(ENQUEUED)) == {"type", "priority", "payload", "max_retries", "timeout_ms", "attempts",
                                          "rev", "errors", "rid", "queue", "sub", "tctx", "sched", "sched_for", "dur"}
    assert set(group_names(RESTORED)) == {"type", "priority", "payload", "max_retries", "timeout_ms", "rev",
                                          "errors", "queue", "sub", "sched", "sched_for", "dur"}


def test_the_fields_enqueue_sets_itself_are_not_the_jobs_to_send():
    assert not {"seq", "status", "updated_ms", "queued_ms"} & set(group_names(ENQUEUED))


def test_an_empty_live_state_decodes_to_the_records_empty_values():
    state = decode_snapshot({"status": "pending", "rev": "1"})
    assert set(state) == {f.attribute for f in FIELDS if SNAPSHOT in f.groups}
    assert state["attempts"] == 0 and state["errors"] == [] and state["result"] is None
    assert state["worker_id"] is None and state["started_at"] is None


# --- through the real scripts -----------------------------------------------------------


async def test_a_job_round_trips_through_enqueue_and_take(queue, token, redis_client):
    job = Job.new(JobSpec(type="echo", priority=7, payload={"text": "naïve ☃", "nested": {"n": [1, 2.5, None]}},
                          max_retries=4, timeout_s=12.5), request_id="req-42")
    taken = await start_one(queue, token, job)
    assert (taken.id, taken.type, taken.priority, taken.payload, taken.max_retries, taken.timeout_s,
            taken.request_id) == (job.id, job.type, job.priority, job.payload, job.max_retries, job.timeout_s,
                                  job.request_id)
    assert taken.attempts == 1 and taken.wait_s is not None and taken.wait_s >= 0
    stored = await redis_client.hgetall(queue.key("job", job.id))
    assert stored[b"rid"] == b"req-42" and stored[b"timeout_ms"] == b"12500" and stored[b"priority"] == b"7"


async def test_a_job_queued_without_a_request_id_is_taken_with_none(queue, token, redis_client):
    job = Job.new(JobSpec(type="echo"))
    await queue.enqueue([job])
    await redis_client.hdel(queue.key("job", job.id), "rid")  # as a job queued before rid existed
    await queue.register("node-a", 1, ["w"])
    await queue.dispatch("leader", token, max_jobs=1, strategy="round_robin", lease_ms=LEASE_MS, share_every=0)
    taken = await queue.take("w", LEASE_MS)
    assert taken.id == job.id and taken.request_id is None and taken.payload == {}


async def test_a_scheduled_job_waits_in_the_delayed_set(queue, token, redis_client):
    job = Job.new(JobSpec(type="echo"))
    job.scheduled_at = job.created_at.replace(year=job.created_at.year + 1)
    await queue.enqueue([job])
    depths = await queue.depths()
    assert (depths["ready"], depths["delayed"]) == (0, 1)


async def test_an_outbox_entry_and_the_live_state_decode_alike(queue, token, redis_client):
    job = Job.new(JobSpec(type="echo"))
    taken = await start_one(queue, token, job)
    assert await queue.finish("w", taken.id, "completed", result=b'{"ok": true}') == "completed"
    [(_, entry)] = await redis_client.xrange(queue.key("outbox"), count=1)
    snapshot = to_snapshot({k.decode(): v.decode() for k, v in entry.items()})
    live = await queue.live_state(job.id)
    merged = merge_live_state(Job.new(JobSpec(type="echo")), live)
    assert snapshot.rev == merged.rev == int(live["rev"])
    assert snapshot.fields == {name: getattr(merged, name) for name in snapshot.fields}
    assert snapshot.fields["status"] == "completed" and snapshot.fields["result"] == {"ok": True}
    assert snapshot.fields["worker_id"] == "w" and snapshot.fields["finished_at"] is not None


async def test_an_admin_retry_of_a_forgotten_job_restores_it_from_the_record(queue, token, redis_client):
    job = Job.new(JobSpec(type="echo", priority=9, payload={"again": 1}, max_retries=2, timeout_s=3))
    job.status, job.rev, job.errors = "failed", 7, [{"attempt": 3, "error": "boom"}]
    assert await queue.retry(job) == "forgotten"
    live = await queue.live_state(job.id)
    assert live["status"] == "pending" and int(live["rev"]) == 8 and live["attempts"] == "0"
    assert (live["type"], live["priority"], live["payload"], live["max_retries"], live["timeout_ms"]) == (
        "echo", "9", '{"again":1}', "2", "3000")
    assert decode_snapshot(live)["errors"] == job.errors


# --- the retries-used-up rule, at its boundary --------------------------------------------


async def run_attempt(queue, token) -> str:
    await queue.dispatch("leader", token, max_jobs=1, strategy="round_robin", lease_ms=LEASE_MS, share_every=0)
    return (await queue.take("w", LEASE_MS)).id


async def test_a_retry_reported_at_attempt_max_retries_runs_again_and_one_more_fails(queue, token):
    job = Job.new(JobSpec(type="echo", max_retries=2))
    await queue.enqueue([job])
    await queue.register("node-a", 1, ["w"])
    outcomes = []
    for _ in range(3):
        job_id = await run_attempt(queue, token)
        outcomes.append(await queue.finish("w", job_id, "retry", error="boom", delay_ms=0))
    assert outcomes == ["retrying", "retrying", "failed"]  # attempt 2 == max_retries; attempt 3 is one past
    live = await queue.live_state(job.id)
    assert live["attempts"] == "3" and (await queue.depths())["dead_letter"] == 1


async def test_a_job_without_retries_fails_at_its_first_retry(queue, token):
    job = Job.new(JobSpec(type="echo", max_retries=0))
    await queue.enqueue([job])
    await queue.register("node-a", 1, ["w"])
    job_id = await run_attempt(queue, token)
    assert await queue.finish("w", job_id, "retry", error="boom") == "failed"


async def expire_lease_and_reap(queue, token, redis_client, job_id: str) -> None:
    # Backdating the lease makes it expired by the Redis clock without waiting for it.
    assert await redis_client.zadd(queue.key("leases"), {job_id: 0}, xx=True, ch=True) == 1
    assert (await queue.reap("leader", token, worker_ttl_ms=LEASE_MS)).requeued == 1


async def test_an_expired_lease_uses_an_attempt_by_the_same_rule(queue, token, redis_client):
    job = Job.new(JobSpec(type="echo", max_retries=1))
    await queue.enqueue([job])
    await queue.register("node-a", 1, ["w"])
    await run_attempt(queue, token)
    await expire_lease_and_reap(queue, token, redis_client, job.id)
    live = await queue.live_state(job.id)
    assert (live["status"], live["attempts"]) == ("pending", "1")  # attempt 1 == max_retries: runs again
    await run_attempt(queue, token)
    await expire_lease_and_reap(queue, token, redis_client, job.id)
    live = await queue.live_state(job.id)
    assert (live["status"], live["attempts"], live["error"]) == ("failed", "2", "lease expired")
    assert (await queue.depths())["dead_letter"] == 1


def test_a_queue_jobs_document_travels_through_doc_unchanged():
    job = Job.new(JobSpec(type="echo", payload={"a": [1, "x"]}, durability="queue",
                          scheduled_at=from_epoch_ms(1_800_000_000_123)))
    decoded = Job.from_document(decode_document(encode_document(job)))
    assert decoded.to_json() == job.to_json() and decoded.durability == "queue"
