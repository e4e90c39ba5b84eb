"""Health for people and for load balancers.

``GET /api/health`` (seed 000): ``healthy``, ``warning`` when some keys cannot serve,
``critical`` when none can or the store is unreachable. ``GET /livez``: the process answers.
``GET /readyz``: 200 only when a request could be served now (store reachable, a key usable),
else 503 — what a load balancer or a container orchestrator should route by.
"""

from __future__ import annotations

from aiohttp import web

from quotaflow._version import __version__
from quotaflow.gateway import Gateway
from quotaflow.services.readiness import readiness
from quotaflow.web.errors import json_response
from quotaflow.web.state import GATEWAY


async def health(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    now = gw.clock.now()
    ready = await readiness(gw)
    return json_response(
        {
            "success": True,
            "status": ready.status,
            "message": ready.message(),
            "version": __version__,
            "uptime_s": round(now - (gw.started_at or now), 3),
            "providers": len(gw.config.providers),
            "keys": ready.keys,
            "keys_usable": ready.usable,
            "in_flight": gw.in_flight,
        }
    )


async def livez(_: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready = await readiness(request.app[GATEWAY])
    body = {"ready": ready.ready, "status": ready.status, "message": ready.message()}
    if not ready.ready:
        return json_response(body, 503, {"retry-after": "1"})
    return json_response(body)
