"""The one middleware: the request guards, then the handler, with errors rendered in one place.

The guards (:mod:`.host`, :mod:`.cors`, :mod:`.content_type`)
are plain checks composed here rather than stacked middlewares, because aiohttp wraps every
middleware anew on every request — on ``/v1`` that per-request cost is worth saving.
"""

from __future__ import annotations

from aiohttp import web

from quotaflow.errors import QuotaflowError
from quotaflow.gateway.attempts import error_kind_of
from quotaflow.web.auth import OPEN_READS, require_reader
from quotaflow.web.errors import Handler, door_of, exception_response
from quotaflow.web.guards.content_type import check_content_type
from quotaflow.web.guards.cors import add_cors_headers, cors_origin, cors_preflight
from quotaflow.web.guards.host import check_host
from quotaflow.web.state import GATEWAY

READS = frozenset({"GET", "HEAD"})
GUARDED_READS = ("/api/",)
MODEL_PATHS = ("/v1/", "/v1beta/")
SELF_GUARDED = frozenset({"/api/dashboard", "/api/events"})  # the dashboard's own viewer rules


def guard_read(request: web.Request) -> None:
    """Beyond loopback, ``/api`` reads need a credential (web/auth.py says which)."""
    if request.path not in OPEN_READS and request.path not in SELF_GUARDED:
        require_reader(request)


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin: str | None = None
    try:
        check_host(request)
        origin = cors_origin(request)
        check_content_type(request)
        if request.method in READS and request.path.startswith(GUARDED_READS):
            guard_read(request)
        resp = (cors_preflight(request) if origin else None) or await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        resp = exception_response(request, exc)
    except Exception as exc:
        resp = exception_response(request, exc)
        if request.path.startswith(MODEL_PATHS):
            observe_refusal(request, exc, resp.status)
    if origin is not None:
        add_cors_headers(request, resp, origin)
    return resp


def observe_refusal(request: web.Request, exc: Exception, status: int) -> None:
    """A model request that failed before the gateway saw it still gets its access line,
    named by the door it came in by."""
    if isinstance(exc, QuotaflowError) and exc.observed:
        return
    kind = error_kind_of(exc) if isinstance(exc, QuotaflowError) else "internal"
    door = door_of(request.method, request.path)
    request.app[GATEWAY].observer.refused(door, status, kind, str(exc)[:200])
