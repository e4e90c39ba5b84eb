"""``GET /api/health``: 200 once the engine is ready."""

from __future__ import annotations

from aiohttp import web

from quotaflow._version import __version__
from quotaflow.gateway import Gateway
from quotaflow.web.errors import json_response
from quotaflow.web.keys import GATEWAY


async def health(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    now = gw.clock.now()
    usable = sum(1 for k in gw.keys.values() if k.enabled and not gw.health[k.id].disabled_reason)
    return json_response({
        "success": True,
        "status": "healthy" if usable else "degraded",
        "version": __version__,
        "uptime_s": round(now - (gw.started_at or now), 3),
        "providers": len(gw.config.providers),
        "keys": len(gw.keys),
        "keys_usable": usable,
        "in_flight": gw.in_flight,
    })  # fmt: skip
