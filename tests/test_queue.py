"""The Redis queue's scripts, driven directly: order, strategies, fencing, leases, reaping."""

from __future__ import annotations

from collections import Counter

import pytest

from jobnode.core.errors import NotLeader
from jobnode.core.job import Job, JobSpec
from jobnode.storage.redis.lease import LeaderLease
from jobnode.storage.redis.queue import Report
from tests.waiting import wait_until

LEASE_MS = 60_000


def make_job(priority: int = 5, **kw) -> Job:
    return Job.new(JobSpec(type="echo", priority=priority, payload=kw))


async def dispatch(queue, token, max_jobs=100, strategy="round_robin", share_every=0):
    return await queue.dispatch(
        "leader", token, max_jobs=max_jobs, strategy=strategy, lease_ms=LEASE_MS, share_every=share_every
    )


async def drain_order(queue, token, share_every=0) -> list[str]:
    """Run jobs one at a time through a single worker; the order they start in."""
    await queue.register("node-a", 1, ["w"])
    order = []
    while (await dispatch(queue, token, max_jobs=1, share_every=share_every)).assigned:
        taken = await queue.take("w", LEASE_MS)
        order.append(taken.id)
        assert await queue.finish("w", taken.id, "completed", result=b"null")
    return order


async def test_higher_priority_first_and_fifo_within_a_priority(queue, token):
    jobs = [make_job(p) for p in (5, 5, 10, 1, 10, 5, 0)]
    await queue.enqueue(jobs)
    order = await drain_order(queue, token)
    by_id = {j.id: j for j in jobs}
    assert [by_id[i].priority for i in order] == [10, 10, 5, 5, 5, 1, 0]
    submitted = [j.id for j in jobs]
    for priority in (10, 5):
        same = [i for i in order if by_id[i].priority == priority]
        assert same == [i for i in submitted if by_id[i].priority == priority]


async def test_starvation_guard_lets_the_oldest_low_priority_job_through(queue, token):
    low = make_job(0)
    await queue.enqueue([low] + [make_job(10) for _ in range(30)])
    order = await drain_order(queue, token, share_every=10)
    assert order.index(low.id) < 10


async def test_starvation_guard_counts_dispatches_within_one_call_too(queue, token, redis_client):
    low = make_job(0)
    await queue.enqueue([low] + [make_job(10) for _ in range(30)])
    await queue.register("node-a", 100, ["w"])
    assert (await dispatch(queue, token, share_every=10)).assigned == 31
    inbox = [i.decode() for i in await redis_client.lrange(queue.key("inbox", "w"), 0, -1)]
    assert inbox.index(low.id) < 10


async def test_without_the_guard_low_priority_waits_for_all_high(queue, token):
    low = make_job(0)
    await queue.enqueue([low] + [make_job(10) for _ in range(30)])
    order = await drain_order(queue, token, share_every=0)
    assert order.index(low.id) == 30


async def test_enqueue_is_idempotent(queue, token):
    job = make_job()
    assert await queue.enqueue([job]) == 1
    assert await queue.enqueue([job]) == 0
    assert (await queue.depths())["ready"] == 1


async def assignments(queue) -> Counter:
    workers = await queue.workers()
    return Counter({w["id"]: w["load"] for w in workers})


async def test_round_robin_rotates_over_workers(queue, token):
    await queue.register("node-a", 10, ["a1", "a2"])
    await queue.register("node-b", 10, ["b1", "b2"])
    await queue.enqueue([make_job() for _ in range(8)])
    assert (await dispatch(queue, token)).assigned == 8
    assert await assignments(queue) == Counter({"a1": 2, "a2": 2, "b1": 2, "b2": 2})


async def test_round_robin_carries_on_from_where_the_last_call_stopped(queue, token):
    await queue.register("node-a", 10, ["a1", "a2", "a3"])
    await queue.enqueue([make_job() for _ in range(6)])
    for _ in range(6):
        assert (await dispatch(queue, token, max_jobs=1)).assigned == 1
    assert await assignments(queue) == Counter({"a1": 2, "a2": 2, "a3": 2})


async def test_least_loaded_prefers_the_worker_with_most_free_slots(queue, token):
    await queue.register("node-a", 4, ["busy", "idle"])
    await queue.enqueue([make_job() for _ in range(3)])
    # Load "busy" first through round robin over a single registered worker.
    await queue.handback(["idle"])
    await dispatch(queue, token, max_jobs=3)
    await queue.register("node-a", 4, ["idle"])
    await queue.enqueue([make_job() for _ in range(2)])
    await dispatch(queue, token, strategy="least_loaded")
    assert await assignments(queue) == Counter({"busy": 3, "idle": 2})


async def test_random_spreads_over_all_workers(queue, token):
    workers = [f"w{i}" for i in range(4)]
    await queue.register("node-a", 200, workers)
    await queue.enqueue([make_job() for _ in range(200)])
    assert (await dispatch(queue, token, max_jobs=200, strategy="random")).assigned == 200
    counts = await assignments(queue)
    assert set(counts) == set(workers) and all(n > 10 for n in counts.values())


async def test_priority_strategy_sends_urgent_jobs_to_the_least_loaded(queue, token):
    await queue.register("node-a", 10, ["a", "b"])
    await queue.enqueue([make_job(5) for _ in range(3)])  # round robin: a, b, a
    await dispatch(queue, token, strategy="priority")
    await queue.enqueue([make_job(9)])  # least loaded: b
    await dispatch(queue, token, strategy="priority")
    assert await assignments(queue) == Counter({"a": 2, "b": 2})


async def test_full_workers_get_nothing_more(queue, token):
    await queue.register("node-a", 2, ["w"])
    await queue.enqueue([make_job() for _ in range(5)])
    result = await dispatch(queue, token)
    assert (result.assigned, result.free_workers) == (2, 0)


async def test_a_holder_without_a_majority_yields_only_when_a_majority_leader_asks(queue):
    def lease(node):
        return LeaderLease(queue.redis, queue.scripts, queue.prefix, node, ttl_s=60)
    cut_off, elected, lonely = lease("node-a"), lease("node-b"), lease("node-c")
    first = await cut_off.acquire(majority=True)
    assert await cut_off.acquire(majority=False) == first  # nobody asks: it keeps leading
    assert await lonely.acquire(majority=False) is None  # without a majority it does not ask
    assert await cut_off.acquire(majority=False) == first
    assert await elected.acquire(majority=True) is None  # asks, but the lease is still held
    assert await cut_off.acquire(majority=True) == first  # a holder with a majority never yields
    assert await cut_off.acquire(majority=False) is None  # lost its majority and was asked: yields
    assert await cut_off.acquire(majority=False) is None  # and does not take the free lease back
    second = await elected.acquire(majority=True)
    assert second > first
    assert (await elected.holder()).node_id == "node-b"
    assert await elected.acquire(majority=False) == second  # its own old request does not unseat it


async def test_a_leader_of_a_newer_raft_term_takes_the_lease_at_once_and_fences_the_old_one(queue):
    def lease(node):
        return LeaderLease(queue.redis, queue.scripts, queue.prefix, node, ttl_s=60)
    old, new, other = lease("node-a"), lease("node-b"), lease("node-c")
    first = await old.acquire(majority=True, term=3)
    assert await new.acquire(majority=True, term=3) is None  # the same term: the holder keeps it
    assert await new.acquire(majority=False, term=4) is None  # a newer term needs its majority
    assert await new.acquire(majority=True) is None  # no term (bully, gossip): waits for the TTL
    second = await new.acquire(majority=True, term=4)  # without waiting out the 60 s TTL
    assert second > first
    assert await old.acquire(majority=True, term=3) is None  # the old term cannot take it back
    with pytest.raises(NotLeader):  # the old leader's fenced step is refused
        await queue.dispatch("node-a", first, max_jobs=1, strategy="round_robin", lease_ms=LEASE_MS, share_every=0)
    assert await other.acquire(majority=True, term=4) is None  # another node claiming term 4 waits
    assert await new.acquire(majority=True, term=4) == second  # the new leader renews its token
    # A holder without a term (a node of an older version, or lease taken before the term was
    # known) is not pre-empted: nothing says its leadership is over.
    await new.release()
    third = await other.acquire(majority=True)
    assert await new.acquire(majority=True, term=9) is None
    assert (await new.holder()).token == third


async def test_a_stale_leader_cannot_dispatch_or_reap(queue):
    first = LeaderLease(queue.redis, queue.scripts, queue.prefix, "node-a", ttl_s=60)
    second = LeaderLease(queue.redis, queue.scripts, queue.prefix, "node-b", ttl_s=60)
    old_token = await first.acquire()
    assert await second.acquire() is None  # held: nobody else may take it
    await first.release()
    new_token = await second.acquire()
    assert new_token > old_token
    await queue.register("node-a", 1, ["w"])
    await queue.enqueue([make_job()])
    with pytest.raises(NotLeader):
        await queue.dispatch("node-a", old_token, max_jobs=1, strategy="round_robin", lease_ms=1000, share_every=0)
    with pytest.raises(NotLeader):  # right node, wrong token: a paused leader that lost and regained is refused
        await queue.dispatch("node-b", old_token, max_jobs=1, strategy="round_robin", lease_ms=1000, share_every=0)
    with pytest.raises(NotLeader):
        await queue.reap("node-a", old_token, worker_ttl_ms=0)
    assert (await queue.depths())["ready"] == 1
    assert (await queue.dispatch("node-b", new_token, max_jobs=1, strategy="round_robin", lease_ms=1000,
                                 share_every=0)).assigned == 1


async def test_a_dead_workers_jobs_go_back(queue, token):
    await queue.register("node-a", 2, ["ghost"])
    started, waiting = make_job(), make_job()
    await queue.enqueue([started, waiting])
    await dispatch(queue, token)
    assert (await queue.take("ghost", LEASE_MS)).id == started.id
    await queue.register("node-b", 2, ["alive"])

    result = await queue.reap("leader", token, worker_ttl_ms=0)
    assert "ghost" in result.dead_workers and result.requeued == 2
    live = await queue.live_state(started.id)
    assert live["status"] == "pending" and live["attempts"] == "1" and "stopped answering" in live["error"]
    assert (await queue.live_state(waiting.id))["attempts"] == "0"
    # The ghost's late report changes nothing.
    assert not await queue.finish("ghost", started.id, "completed", result=b"1")
    # They run elsewhere.
    await queue.register("node-b", 2, ["alive"])
    assert (await dispatch(queue, token)).assigned == 2


async def test_an_expired_lease_puts_the_job_back(queue, token):
    await queue.register("node-a", 1, ["w"])
    job = make_job()
    await queue.enqueue([job])
    await queue.dispatch("leader", token, max_jobs=1, strategy="round_robin", lease_ms=1, share_every=0)
    await queue.take("w", 1)

    async def reclaimed():
        return (await queue.reap("leader", token, worker_ttl_ms=LEASE_MS)).requeued

    await wait_until(reclaimed, timeout_s=5, message="lease never expired")
    live = await queue.live_state(job.id)
    assert live["status"] == "pending" and live["error"] == "lease expired"
    assert (await queue.workers())[0]["load"] == 0


async def test_exhausted_attempts_end_in_the_dead_letter_set(queue, token):
    await queue.register("node-a", 1, ["w"])
    job = Job.new(JobSpec(type="echo", max_retries=1))
    await queue.enqueue([job])
    for outcome in ("retry", "retry"):
        await dispatch(queue, token)
        taken = await wait_until(lambda: queue.take("w", LEASE_MS), timeout_s=5, message="no retry")
        assert await queue.finish("w", taken.id, outcome, error="boom", delay_ms=0)
    live = await queue.live_state(job.id)
    assert live["status"] == "failed" and live["attempts"] == "2"
    assert (await queue.depths())["dead_letter"] == 1


async def test_heartbeat_renews_and_reports_lost_jobs_and_missing_workers(queue, token):
    await queue.register("node-a", 2, ["w"])
    kept, cancelled = make_job(), make_job()
    await queue.enqueue([kept, cancelled])
    await dispatch(queue, token)
    await queue.take("w", LEASE_MS)
    await queue.cancel(cancelled.id)
    lost, missing = await queue.heartbeat(LEASE_MS, {"w": kept.id, "gone": None})
    assert lost == [] and missing == ["gone"]
    lost, _ = await queue.heartbeat(LEASE_MS, {"w": cancelled.id})
    assert lost == [cancelled.id]


async def test_handback_refunds_the_attempt_of_a_cut_off_job(queue, token):
    await queue.register("node-a", 1, ["w"])
    job = make_job()
    await queue.enqueue([job])
    await dispatch(queue, token)
    await queue.take("w", LEASE_MS)
    assert await queue.handback(["w"]) == 1
    live = await queue.live_state(job.id)
    assert live["status"] == "pending" and live["attempts"] == "0"
    assert await queue.workers() == []


async def test_registering_again_returns_what_the_previous_process_held(queue, token):
    await queue.register("node-a", 1, ["w"])
    job = make_job()
    await queue.enqueue([job])
    await dispatch(queue, token)
    await queue.take("w", LEASE_MS)
    await queue.register("node-a", 1, ["w"])  # the node restarted with the same worker ids
    assert (await queue.live_state(job.id))["status"] == "pending"


async def test_heartbeat_does_not_keep_alive_a_job_its_worker_lost_track_of(queue, token, redis_client):
    # The worker's take ran in Redis but its reply was lost (connection reset): Redis says
    # running, the worker runs nothing. Renewing that lease would strand the job forever.
    await queue.register("node-a", 2, ["w"])
    orphan, waiting = make_job(), make_job()
    await queue.enqueue([orphan, waiting])
    await queue.dispatch("leader", token, max_jobs=2, strategy="round_robin", lease_ms=1000, share_every=0)
    assert (await queue.take("w", 1000)).id == orphan.id
    lost, _ = await queue.heartbeat(LEASE_MS, {"w": None})
    assert lost == []
    leases = dict(await redis_client.zrange(queue.key("leases"), 0, -1, withscores=True))
    assert leases[waiting.id.encode()] > leases[orphan.id.encode()] + 30_000  # only the queued one renewed

    async def put_back() -> bool:
        await queue.reap("leader", token, worker_ttl_ms=LEASE_MS)
        return (await queue.live_state(orphan.id))["status"] == "pending"

    await wait_until(put_back, timeout_s=10, message="the orphaned running job was never put back")


async def test_a_report_starts_the_next_job_in_the_same_call_unless_told_not_to(queue, token):
    await queue.register("node-a", 3, ["w"])
    first, second, third = make_job(n=1), make_job(n=2), make_job(n=3)
    await queue.enqueue([first, second, third])
    await dispatch(queue, token)
    taken = await queue.take("w", LEASE_MS)
    [(accepted, following)] = await queue.finish_many(
        [Report("w", taken.id, "completed", result=b"1", next_lease_ms=LEASE_MS)])
    assert accepted and following.id == second.id and following.attempts == 1
    assert (await queue.live_state(second.id))["status"] == "running"
    # A late, duplicate report is refused, and a stopping worker takes nothing more.
    [(accepted, nothing)] = await queue.finish_many([Report("w", taken.id, "completed", next_lease_ms=0)])
    assert not accepted and nothing is None
    assert (await queue.live_state(third.id))["status"] == "assigned"
    [(accepted, last)] = await queue.finish_many(
        [Report("w", following.id, "retry", error="boom", delay_ms=0, next_lease_ms=LEASE_MS)])
    assert accepted and last.id == third.id
    assert (await queue.live_state(second.id))["status"] == "retrying"


async def test_one_call_delivers_several_workers_reports_each_on_its_own_merits(queue, token):
    await queue.register("node-a", 2, ["a", "b", "c"])
    jobs = [make_job(n=i) for i in range(6)]
    await queue.enqueue(jobs)
    await dispatch(queue, token)  # two per worker, round robin
    taken = {w: await queue.take(w, LEASE_MS) for w in ("a", "b", "c")}
    await queue.cancel(taken["c"].id)  # c's outcome will come too late
    rows = await queue.finish_many([
        Report("a", taken["a"].id, "completed", result=b"1", next_lease_ms=LEASE_MS),
        Report("b", taken["b"].id, "failed", error="bad input", next_lease_ms=0),  # b is stopping
        Report("c", taken["c"].id, "completed", next_lease_ms=LEASE_MS),
        Report("a", taken["a"].id, "completed", next_lease_ms=0),  # a duplicate in the same call
    ])
    assert [ended for ended, _ in rows] == ["completed", "failed", None, None]
    following = {w: row[1] for w, row in zip("abc", rows)}
    assert following["b"] is None and rows[3][1] is None
    for worker in ("a", "c"):  # each took its own next job, whatever became of its report
        assert (await queue.live_state(following[worker].id))["worker"] == worker
        assert (await queue.live_state(following[worker].id))["status"] == "running"
    assert (await queue.live_state(taken["a"].id))["status"] == "completed"
    assert (await queue.live_state(taken["b"].id))["status"] == "failed"
    assert (await queue.live_state(taken["c"].id))["status"] == "cancelled"


async def test_each_outcomes_outbox_entry_is_the_jobs_state_after_it(queue, token, redis_client):
    # finish.lua builds an outcome's entry from what it read before the change, not by
    # reading the job again: the entry must still be exactly the job's new state.
    jobs = [make_job(), make_job(), make_job()]
    await queue.enqueue(jobs)
    await queue.register("node-a", 1, ["a", "b", "c"])
    await dispatch(queue, token)
    taken = {w: await queue.take(w, LEASE_MS) for w in ("a", "b", "c")}
    outbox = queue.key("outbox")
    before = (await redis_client.xrevrange(outbox, count=1) or [(b"0-0", {})])[0][0]
    await queue.finish_many([
        Report("a", taken["a"].id, "completed", result=b'{"n": 1}'),
        Report("b", taken["b"].id, "retry", error="flaky", delay_ms=60_000),
        Report("c", taken["c"].id, "failed", error="bad input"),
    ])
    entries = await redis_client.xrange(outbox, min=f"({before.decode()}")
    assert len(entries) == 3
    snapshot_fields = {b"status", b"rev", b"attempts", b"worker", b"node", b"started_ms", b"finished_ms",
                       b"result", b"error", b"errors", b"updated_ms", b"type"}
    for _, entry in entries:
        state = await redis_client.hgetall(queue.key("job", entry[b"id"].decode()))
        expected = {name: value for name, value in state.items() if name in snapshot_fields}
        assert {name: value for name, value in entry.items() if name != b"id"} == expected
    assert [e[b"status"] for _, e in entries] == [b"completed", b"retrying", b"failed"]
    assert all(int(e[b"rev"]) >= 2 for _, e in entries)


async def test_a_takeover_pauses_the_old_holders_workers_until_they_heartbeat_again(queue):
    def lease(node):
        return LeaderLease(queue.redis, queue.scripts, queue.prefix, node, ttl_s=60)

    async def dispatch_as(node, token):
        return await queue.dispatch(node, token, max_jobs=10, strategy="round_robin", lease_ms=LEASE_MS,
                                    share_every=0)

    old, new = lease("node-a"), lease("node-b")
    old_token = await old.acquire(majority=True, term=1)
    await queue.register("node-a", 2, ["a1"])
    await queue.register("node-b", 2, ["b1"])
    first, second, third = jobs = [make_job() for _ in range(3)]
    await queue.enqueue(jobs)
    assert (await dispatch_as("node-a", old_token)).assigned == 3  # round robin: a1, b1, a1
    running = await queue.take("a1", LEASE_MS)
    assert running.id == first.id  # a1 runs one job; the third waits in its inbox

    new_token = await new.acquire(majority=True, term=2)  # node-a went silent: a newer term takes over
    later = make_job()
    await queue.enqueue([later])
    result = await dispatch_as("node-b", new_token)
    # The third job came back to the queue at its old place and went to b1's free slot; a1,
    # paused, was offered nothing.
    assert (result.assigned, result.free_workers) == (1, 0)
    worker_of = {job.id: (await queue.live_state(job.id)).get("worker") for job in [*jobs, later]}
    assert worker_of == {first.id: "a1", second.id: "b1", third.id: "b1", later.id: None}
    assert (await queue.live_state(first.id))["status"] == "running"  # its lease is left alone
    assert await queue.take("a1", LEASE_MS) is None  # the inbox was emptied

    await queue.heartbeat(LEASE_MS, {"a1": first.id})  # node-a is alive after all: offered jobs again
    assert (await dispatch_as("node-b", new_token)).assigned == 1
    assert (await queue.live_state(later.id))["worker"] == "a1"


async def test_a_lease_handed_over_on_purpose_pauses_nobody(queue):
    old = LeaderLease(queue.redis, queue.scripts, queue.prefix, "node-a", ttl_s=60)
    new = LeaderLease(queue.redis, queue.scripts, queue.prefix, "node-b", ttl_s=60)
    await old.acquire()
    await queue.register("node-a", 1, ["a1"])
    await old.release()
    token = await new.acquire()
    await queue.enqueue([make_job()])
    assert (await queue.dispatch("node-b", token, max_jobs=1, strategy="round_robin", lease_ms=LEASE_MS,
                                 share_every=0)).assigned == 1
