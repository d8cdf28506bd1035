"""Overload: offered load far above what a node can make durable gets quick 503s, and it recovers.

MongoDB is slowed down on purpose (SecantusDB's `failCommand` failpoint blocks every insert
of the nodes for a while) and the write batch is small, so a node can make only a few
submissions durable per second; the load generator offers many times that. Bounded
admission (jobnode/commits.py) must answer the excess at once with 503 + Retry-After
rather than queue it: no client timeouts, memory that stays flat. Once the load drops,
submissions are accepted again and every acknowledged job completes (history check).
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tools.procfs import rss_mib
from tools.chaos.recording import TYPE, payload

pytestmark = pytest.mark.slow

# A node writes up to 4 batches of COMMIT_MAX_BATCH at once (service.SUBMIT_WRITES_IN_FLIGHT)
# and admits at most 4 x 5 waiting submissions: with each insert held 1 s, the three nodes
# made 218 submissions durable in the 6 s (36/s), under a third of the offer; at 0.5 s they
# made 72/s, which left too little excess to tell admission from plain slowness.
INSERT_BLOCK_MS = 1000
COMMIT_MAX_BATCH = "5"
OFFERED_PER_S = 120.0
OVERLOAD_S = 6.0


async def test_overload_gets_quick_refusals_and_the_node_recovers(private_mongo, chaos):
    await chaos.use(mongo_url=private_mongo.url)
    cluster = await chaos.start("bully", COMMIT_MAX_BATCH=COMMIT_MAX_BATCH)
    pids = {node_id: node.process.pid for node_id, node in cluster.nodes.items()}
    rss_before = {node_id: rss_mib(pid) for node_id, pid in pids.items()}
    await chaos.fail_mongo(blockConnection=True, blockTimeMS=INSERT_BLOCK_MS, failCommands=["insert"])
    load = chaos.start_load(rate_per_s=OFFERED_PER_S, hold_ms=10, max_in_flight=1000)
    await asyncio.sleep(OVERLOAD_S)  # the overload's length, not a synchronisation
    await load.stop()
    await chaos.heal_mongo()
    rss_after = {node_id: rss_mib(pid) for node_id, pid in pids.items()}
    summary = {"offered": load.submitted, "acknowledged": len(load.acked), "refused": dict(load.refused),
               "latency": load.latency_summary(),
               "rss_mib": {n: [round(rss_before[n], 1), round(rss_after[n], 1)] for n in pids}}
    print("overload:", json.dumps(summary))
    assert load.refused["503"] > load.submitted / 2, summary
    assert not load.refused.keys() - {"503"}, f"answers other than 2xx and 503: {summary}"

    # The load drops: every submission is accepted again.
    async with aiohttp.ClientSession() as session:
        for node_id, node in cluster.nodes.items():
            for _ in range(5):
                body = {"type": TYPE, "payload": payload(chaos.record_dir, 10)}
                async with session.post(f"{node.url}/api/v1/jobs", json=body) as resp:
                    assert resp.status == 201, (node_id, await resp.text())
                    chaos.acked[(await resp.json())["id"]] = "completed"
    await chaos.finish()
