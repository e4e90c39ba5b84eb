"""CORS for the server's own origin and ``server.cors_origins`` only, in every mode.

The own origin is the one the dashboard is served from (``http://<Host>``; the Host guard
has already checked the name). Any other page — even one on another localhost port, which
in trust-local mode would be every local caller's admin — gets no CORS headers (the
browser cannot read answers), its preflight is refused, and so is any state-changing
request it sends: a page elsewhere cannot drive the gateway through the user's browser.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from quotaflow.errors import Forbidden
from quotaflow.web.state import RUNTIME

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALLOW_HEADERS = "Content-Type, Authorization, X-Quotaflow-Agent, X-Quotaflow-Admin-Token"
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"


def origin_allowed(origin: str, extra: list[str], host: str) -> bool:
    """``origin`` is configured, or is this server's own (``http(s)://<Host header>``)."""
    if origin in extra:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host.lower()


def cors_origin(request: web.Request) -> str | None:
    """The request's Origin when it may get CORS headers; ``None`` without one.

    Raises :class:`Forbidden` for a state-changing request (or a preflight) from a foreign origin.
    """
    origin = request.headers.get("origin")
    if origin is None:
        return None
    extra = request.app[RUNTIME].gateway.config.server.cors_origins
    if origin_allowed(origin, extra, request.headers.get("host", "")):
        return origin
    if request.method not in SAFE_METHODS - {"OPTIONS"}:
        raise Forbidden(
            f"cross-origin request from {origin!r} refused (only this server's own origin "
            "and server.cors_origins)"
        )
    return None


def cors_preflight(request: web.Request) -> web.Response | None:
    """The answer to a CORS preflight, or ``None`` when the request is not one."""
    if request.method == "OPTIONS" and request.headers.get("access-control-request-method"):
        return web.Response(status=204)
    return None


def add_cors_headers(request: web.Request, resp: web.StreamResponse, origin: str) -> None:
    if resp.prepared:
        return  # a stream already sent its headers (they were set before it started)
    resp.headers["Access-Control-Allow-Origin"] = origin
    resp.headers["Vary"] = "Origin"
    if request.method == "OPTIONS":
        resp.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        resp.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        resp.headers["Access-Control-Max-Age"] = "600"
