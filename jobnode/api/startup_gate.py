"""While the node is still starting (waiting for Redis or MongoDB), every route but /health answers 503.

/health stays open so that orchestrators and `jobnode dev` can see the node is up but not
ready, and which server it waits for (its `startup` check).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from jobnode.api.appkeys import SYSTEM_SERVICE
from jobnode.core.errors import Unavailable

OPEN_WHILE_STARTING = frozenset({"/health"})


@web.middleware
async def startup_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    system = request.app.get(SYSTEM_SERVICE)
    if system is None or system.readiness.ready or request.path in OPEN_WHILE_STARTING:
        return await handler(request)
    raise Unavailable(system.readiness.refusal())
