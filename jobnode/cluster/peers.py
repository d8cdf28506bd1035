"""Sending election messages to other nodes over HTTP, without ever blocking on one of them.

Each destination has its own small queue and its own sender task. A slow or dead peer
fills only its own queue; when full, its oldest message is dropped (election protocols
are built to survive lost messages, and a stale heartbeat is worth less than a new one).
Nothing is retried here for the same reason: the algorithm's next tick sends afresh.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import structlog

from jobnode.core.background import cancel_all
from jobnode.auth.peer_signatures import sign
from jobnode.cluster.seeds import SeedContact

log = structlog.get_logger(__name__)

ELECTION_PATH = "/internal/v1/election"
QUEUE_SIZE = 64
IDLE_SENDER_S = 60.0  # a sender with nothing to do for this long goes away
REFUSAL_LOG_EVERY_S = 60.0  # a peer that keeps refusing us is logged at most this often


@dataclass
class PeerStats:
    sent: int = 0
    failed: int = 0
    dropped: int = 0


class PeerTransport:
    """Delivers signed message bodies to peer addresses, one independent lane per peer."""

    def __init__(self, node_id: str, secret: bytes, *, timeout_s: float, ssl_context: ssl.SSLContext | None = None,
                 on_reached: Callable[[str, float], None] | None = None, seeds: SeedContact | None = None):
        self.node_id = node_id
        self.seeds = seeds  # back-off towards seeds that never answered
        self._refusal_logged: dict[str, float] = {}
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._ssl = ssl_context
        self._lanes: dict[str, asyncio.Queue[bytes]] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.stats: dict[str, PeerStats] = {}
        self._on_reached = on_reached  # told (address, loop time) of every 2xx answer

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit_per_host=4, ssl=self._ssl if self._ssl else None)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)

    async def stop(self) -> None:
        await cancel_all(list(self._senders.values()))
        self._senders.clear()
        if self._session:
            await self._session.close()

    def send(self, address: str, body: bytes) -> None:
        """Queue one message for `address` (a base URL); never waits."""
        if self.seeds is not None and not self.seeds.may_send(address, asyncio.get_running_loop().time()):
            return  # a seed in back-off: the election asks again later
        lane = self._lanes.get(address)
        if lane is None:
            lane = self._lanes[address] = asyncio.Queue(maxsize=QUEUE_SIZE)
            self.stats[address] = PeerStats()
        if lane.full():
            lane.get_nowait()
            self.stats[address].dropped += 1
        lane.put_nowait(body)
        sender = self._senders.get(address)
        if sender is None or sender.done():
            self._senders[address] = asyncio.create_task(self._deliver(address, lane), name=f"peer:{address}")

    async def _deliver(self, address: str, lane: asyncio.Queue[bytes]) -> None:
        url = address.rstrip("/") + ELECTION_PATH
        stats = self.stats[address]
        while True:
            try:
                body = await asyncio.wait_for(lane.get(), timeout=IDLE_SENDER_S)
            except TimeoutError:
                return
            headers = sign(self._secret, "POST", ELECTION_PATH, self.node_id, body, time.time())
            headers["Content-Type"] = "application/json"
            try:
                assert self._session is not None
                async with self._session.post(url, data=body, headers=headers) as resp:
                    now = asyncio.get_running_loop().time()
                    if resp.status >= 300:
                        stats.failed += 1
                        self._refused(address, resp.status, now)
                    else:
                        stats.sent += 1
                        if self._on_reached is not None:
                            self._on_reached(address, now)
                        if self.seeds is not None:
                            self.seeds.reached(address, now)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                stats.failed += 1
                error = str(exc) or type(exc).__name__
                log.debug("peer.unreachable", peer=address, error=error)
                if self.seeds is not None:
                    self.seeds.failed(address, asyncio.get_running_loop().time(),
                                      "connection failed" if isinstance(exc, OSError) else type(exc).__name__)

    def _refused(self, address: str, status: int, now: float) -> None:
        """A peer answered but would not take our message; a 401 means our signature failed there."""
        reason = (f"refused with HTTP {status}: the peer does not accept our signature (is CLUSTER_SECRET the "
                  "same on both nodes?)" if status == 401 else f"refused with HTTP {status}")
        if self.seeds is not None:
            self.seeds.failed(address, now, reason)
        if status in (401, 403) and now - self._refusal_logged.get(address, float("-inf")) >= REFUSAL_LOG_EVERY_S:
            self._refusal_logged[address] = now
            log.warning("peer.refused", peer=address, status=status, reason=reason)
        else:
            log.debug("peer.refused", peer=address, status=status)
