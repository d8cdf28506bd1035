"""Routes about the cluster: leader, nodes, elections, algorithms, and the peer message route."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import orjson
from aiohttp import web

import election
from jobnode.api.access import access
from jobnode.auth.roles import ADMIN_ACCESS, MONITOR_ACCESS, PEER_ACCESS, PUBLIC
from jobnode.api.appkeys import CLUSTER_STORE, ELECTOR, LEADERSHIP, PEER_VERIFIER, SETTINGS
from jobnode.api.bodies import int_query
from jobnode.cluster.recorder import DOWN_AFTER_S
from jobnode.core.errors import NotFound, ValidationError
from jobnode.core.job import isoformat, utcnow
from jobnode.cluster.peers import ELECTION_PATH
from jobnode.cluster.quorum import PeerContact

routes = web.RouteTableDef()


def _leader_address(request: web.Request, leader: str | None) -> str | None:
    if leader is None:
        return None
    if leader == request.app[SETTINGS].node_id:
        return request.app[SETTINGS].advertise_url
    member = request.app[ELECTOR].view.members.get(leader)
    return member.address if member else request.app[SETTINGS].peers.get(leader)


@routes.get("/api/v1/leader")
@access(PUBLIC)
async def leader(request: web.Request) -> web.Response:
    settings, view = request.app[SETTINGS], request.app[ELECTOR].view
    holder = await request.app[LEADERSHIP].lease.holder()
    return web.json_response({
        "leader_id": view.leader,
        "is_leader": view.leader == settings.node_id,
        "address": _leader_address(request, view.leader),
        "term": view.term,
        "algorithm": settings.election_algorithm,
        "since": isoformat(view.since),
        "lease": {"holder": holder.node_id, "fencing_token": holder.token} if holder else None,
    })


@routes.get("/api/v1/election")
@access(MONITOR_ACCESS)
async def election_view(request: web.Request) -> web.Response:
    settings, elector = request.app[SETTINGS], request.app[ELECTOR]
    view = elector.view
    return web.json_response({
        "node_id": settings.node_id,
        "is_leader": view.leader == settings.node_id,
        "leader_id": view.leader,
        "current_algorithm": settings.election_algorithm,
        "term": view.term,
        "role": elector.role,
        "since": isoformat(view.since),
        "leader_changes_seen": view.changes,
        "supported_algorithms": list(election.ALGORITHM_NAMES),
        "peer_messages": {"received": elector.received, "refused": request.app[PEER_VERIFIER].refused},
        "quorum": _quorum(elector.contact),
        "members": [_member(m) for m in sorted(view.members.values(), key=lambda m: m.node_id)],
    })


def _quorum(contact: PeerContact) -> dict[str, Any]:
    now = asyncio.get_running_loop().time()
    return {"cluster_size": contact.cluster_size, "peers_reached": contact.recent(now),
            "window_s": contact.window_s, "has_majority": contact.has_majority(now)}


def _member(member: election.Member) -> dict[str, Any]:
    return {"id": member.node_id, "address": member.address, "state": member.state}


def _settings_of(request: web.Request) -> dict[str, Any]:
    s = request.app[SETTINGS]
    return {"election_timeout_s": s.election_timeout_s, "election_interval_s": s.election_interval_s,
            "node_priority": s.node_priority, "peers": sorted(s.peers)}


@routes.get("/api/v1/election/algorithms")
@access(PUBLIC)
async def algorithms(request: web.Request) -> web.Response:
    current = request.app[SETTINGS].election_algorithm
    return web.json_response({
        "current": current,
        "current_settings": _settings_of(request),
        "algorithms": [{**election.describe(name), "current": name == current} for name in election.ALGORITHM_NAMES],
    })


@routes.get("/api/v1/election/algorithms/{name}")
@access(PUBLIC)
async def algorithm(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in election.ALGORITHM_NAMES:
        raise NotFound(f"no election algorithm {name[:40]!r}; valid names: {', '.join(election.ALGORITHM_NAMES)}",
                       details={"valid_names": list(election.ALGORITHM_NAMES)})
    body = {**election.describe(name), "current": name == request.app[SETTINGS].election_algorithm}
    if body["current"]:
        body["current_settings"] = _settings_of(request)
    return web.json_response(body)


@routes.get("/api/v1/elections")
@access(ADMIN_ACCESS)
async def elections(request: web.Request) -> web.Response:
    limit = int_query(request, "limit", default=50, low=1, high=1000)
    changes = await request.app[CLUSTER_STORE].leader_changes(limit=limit)
    for change in changes:
        for field in ("at", "elected_at"):  # elected_at: entries written since it was added
            if field in change:
                change[field] = isoformat(change[field])
    return web.json_response({"elections": changes, "count": len(changes)})


async def _nodes(request: web.Request) -> list[dict[str, Any]]:
    """Every node that ever registered, judged by this node's view of the leader."""
    view = request.app[ELECTOR].view
    now = utcnow()
    rows = []
    for doc in await request.app[CLUSTER_STORE].all_nodes():
        last = doc.get("last_heartbeat")
        alive = last is not None and now - last <= timedelta(seconds=DOWN_AFTER_S)
        member = view.members.get(doc["_id"])
        rows.append({
            "id": doc["_id"],
            "address": doc.get("address"),
            "is_leader": doc["_id"] == view.leader,
            "role": doc.get("role") if alive else "unreachable",
            "health": "healthy" if alive else "down",
            "membership": member.state if member else None,
            "last_seen": isoformat(last),
            "term": doc.get("term"),
            "algorithm": doc.get("algorithm"),
            "worker_count": doc.get("worker_count"),
            "workers_busy": doc.get("workers_busy"),
            "started_at": isoformat(doc.get("started_at")),
        })
    return rows


@routes.get("/api/v1/nodes")
@access(ADMIN_ACCESS)
async def nodes(request: web.Request) -> web.Response:
    rows = await _nodes(request)
    return web.json_response({"nodes": rows, "count": len(rows)})


@routes.get("/api/v1/cluster")
@access(ADMIN_ACCESS)
async def cluster(request: web.Request) -> web.Response:
    rows = await _nodes(request)
    leader_row = next((row for row in rows if row["is_leader"]), None)
    return web.json_response({
        "cluster_size": sum(1 for row in rows if row["health"] == "healthy"),
        "leader": leader_row,
        "election_algorithm": request.app[SETTINGS].election_algorithm,
        "nodes": rows,
    })


@routes.post(ELECTION_PATH)
@access(PEER_ACCESS)
async def peer_message(request: web.Request) -> web.Response:
    """Election traffic from other nodes; only requests signed with CLUSTER_SECRET get in."""
    body = await request.read()
    request.app[PEER_VERIFIER].check(request.method, request.path, request.headers, body, time.time())
    try:
        message = election.decode(orjson.loads(body))
    except (orjson.JSONDecodeError, election.DecodeError) as exc:
        raise ValidationError("body", f"not an election message: {exc}") from None
    await request.app[ELECTOR].deliver(message)
    return web.Response(status=204)
