"""CORS for localhost origins only (plus ``server.cors_origins``).

An allowed origin gets ``Access-Control-Allow-Origin`` and preflights are answered. A
foreign origin gets no CORS headers (the browser cannot read answers), its preflight is
refused, and so is any state-changing request it sends: a page elsewhere cannot drive
the gateway through the user's browser.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from quotaflow.errors import Forbidden
from quotaflow.management import is_loopback
from quotaflow.web.auth import MANAGEMENT
from quotaflow.web.errors import Handler

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALLOW_HEADERS = "Content-Type, Authorization, X-Quotaflow-Agent, X-Quotaflow-Admin-Token"
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"


def origin_allowed(origin: str, extra: list[str]) -> bool:
    if origin in extra:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and is_loopback(parts.hostname or "")


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("origin")
    if origin is None:
        return await handler(request)
    extra = request.app[MANAGEMENT].gateway.config.server.cors_origins
    allowed = origin_allowed(origin, extra)
    if not allowed and request.method not in SAFE_METHODS - {"OPTIONS"}:
        raise Forbidden(f"cross-origin request from {origin!r} refused (only localhost origins)")
    if request.method == "OPTIONS" and request.headers.get("access-control-request-method"):
        resp: web.StreamResponse = web.Response(status=204)
    else:
        resp = await handler(request)
    if allowed:
        resp.headers["Access-Control-Allow-Origin"] = origin
        resp.headers["Vary"] = "Origin"
        if request.method == "OPTIONS":
            resp.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            resp.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            resp.headers["Access-Control-Max-Age"] = "600"
    return resp
