"""JobStore.insert_many: a job stored by an earlier attempt counts as inserted, so a lost reply is safe to resend."""

from __future__ import annotations

import asyncio

from pymongo import AsyncMongoClient

from jobnode.dev.embedded import EmbeddedMongo, with_uri_options
from jobnode.core.job import Job, JobSpec
from jobnode.storage.mongo.jobs import DuplicateIdempotencyKey, JobStore
from tools.chaos.tcp_proxy import FROM_TARGET, TcpProxy
from tests.waiting import wait_until


async def test_a_job_already_stored_under_its_id_counts_as_inserted(mongo_db):
    store = JobStore(mongo_db)
    await store.ensure_indexes()
    first, keyed = Job.new(JobSpec(type="echo")), Job.new(JobSpec(type="echo", idempotency_key="order-7"))
    assert await store.insert_many([first, keyed]) == [None, None]
    fresh, same_key = Job.new(JobSpec(type="echo")), Job.new(JobSpec(type="echo", idempotency_key="order-7"))
    # first and keyed again (an attempt whose reply was lost), beside a new job and a real key clash.
    outcomes = await store.insert_many([first, fresh, keyed, same_key])
    assert outcomes[:3] == [None, None, None]
    assert isinstance(outcomes[3], DuplicateIdempotencyKey)
    assert await mongo_db.jobs.count_documents({"_id": {"$in": [first.id, keyed.id, fresh.id]}}) == 3
    assert await mongo_db.jobs.count_documents({"_id": same_key.id}) == 0


async def test_an_insert_whose_reply_was_lost_is_sent_again_and_stored_once(mongo_server: EmbeddedMongo,
                                                                           mongo_db):
    # The store's client reaches the server through a proxy that swallows replies; retryable
    # writes are off, as on every embedded SecantusDB, so only the store itself can resend.
    # A direct connection: SecantusDB names itself a replica set member at its own port, which
    # the driver would otherwise connect to past the proxy. Polled monitoring, once a minute:
    # no monitor traffic crosses the proxy while it is cut, so the first bytes it swallows
    # are the insert's reply.
    proxy = await TcpProxy(mongo_server.port).start()
    uri = with_uri_options(f"mongodb://127.0.0.1:{proxy.port}", retryWrites="false")
    client: AsyncMongoClient = AsyncMongoClient(uri, socketTimeoutMS=1_000, serverSelectionTimeoutMS=20_000,
                                                serverMonitoringMode="poll", heartbeatFrequencyMS=60_000,
                                                directConnection=True)
    try:
        store = JobStore(client[mongo_db.name])
        await store.get("warm-up")  # a pooled connection, opened before the cut
        job = Job.new(JobSpec(type="echo"))
        proxy.cut(FROM_TARGET)
        insert = asyncio.create_task(store.insert_many([job]))
        await wait_until(lambda: proxy.swallowed_bytes > 0, timeout_s=20, message="no reply was swallowed")
        assert await mongo_db.jobs.count_documents({"_id": job.id}) == 1  # it was stored, unbeknown to the store
        proxy.heal()
        assert await asyncio.wait_for(insert, timeout=60) == [None]
        assert await mongo_db.jobs.count_documents({"_id": job.id}) == 1
    finally:
        await client.close()
        await proxy.close()
