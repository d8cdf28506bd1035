"""Routes about the cluster: leader, nodes, elections, algorithms, and the peer message route."""

from __future__ import annotations

from aiohttp import web

from jobnode.api.access import access
from jobnode.api.appkeys import CLUSTER_SERVICE
from jobnode.api.bodies import int_query
from jobnode.auth.tls import certificate_node_ids
from jobnode.auth.roles import ADMIN_ACCESS, MONITOR_ACCESS, PEER_ACCESS, PUBLIC
from jobnode.services.cluster import PEER_MESSAGE_PATH

routes = web.RouteTableDef()


@routes.get("/api/v1/leader")
@access(PUBLIC)
async def leader(request: web.Request) -> web.Response:
    return web.json_response(await request.app[CLUSTER_SERVICE].leader())


@routes.get("/api/v1/election")
@access(MONITOR_ACCESS)
async def election_view(request: web.Request) -> web.Response:
    return web.json_response(request.app[CLUSTER_SERVICE].election())


@routes.get("/api/v1/election/algorithms")
@access(PUBLIC)
async def algorithms(request: web.Request) -> web.Response:
    return web.json_response(request.app[CLUSTER_SERVICE].algorithms())


@routes.get("/api/v1/election/algorithms/{name}")
@access(PUBLIC)
async def algorithm(request: web.Request) -> web.Response:
    return web.json_response(request.app[CLUSTER_SERVICE].algorithm(request.match_info["name"]))


@routes.get("/api/v1/elections")
@access(ADMIN_ACCESS)
async def elections(request: web.Request) -> web.Response:
    limit = int_query(request, "limit", default=50, low=1, high=1000)
    changes = await request.app[CLUSTER_SERVICE].elections(limit)
    return web.json_response({"elections": changes, "count": len(changes)})


@routes.get("/api/v1/nodes")
@access(ADMIN_ACCESS)
async def nodes(request: web.Request) -> web.Response:
    rows = await request.app[CLUSTER_SERVICE].nodes()
    return web.json_response({"nodes": rows, "count": len(rows)})


@routes.get("/api/v1/cluster")
@access(ADMIN_ACCESS)
async def cluster(request: web.Request) -> web.Response:
    return web.json_response(await request.app[CLUSTER_SERVICE].cluster())


@routes.post("/api/v1/cluster/leave")
@access(ADMIN_ACCESS)
async def leave(request: web.Request) -> web.Response:
    """This node leaves the membership, then stops serving (after this answer is sent)."""
    return web.json_response(await request.app[CLUSTER_SERVICE].leave(), status=202)


@routes.delete("/api/v1/cluster/members/{node_id}")
@access(ADMIN_ACCESS)
async def remove_member(request: web.Request) -> web.Response:
    """Remove a node gone for good: 200 once committed, 202 while the change is still under way."""
    confirmed, body = await request.app[CLUSTER_SERVICE].remove_member(request.match_info["node_id"])
    return web.json_response(body, status=200 if confirmed else 202)


@routes.post(PEER_MESSAGE_PATH)
@access(PEER_ACCESS)
async def peer_message(request: web.Request) -> web.Response:
    """Election traffic from other nodes; only requests signed with CLUSTER_SECRET get in."""
    body = await request.read()
    await request.app[CLUSTER_SERVICE].receive_peer_message(request.method, request.path, request.headers, body,
                                                            certificate_ids=certificate_node_ids(request))
    return web.Response(status=204)
