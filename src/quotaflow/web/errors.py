"""Errors become responses in one place: OpenAI's error JSON on ``/v1``, the seed's
``{"success": false, "message": …}`` envelope on ``/api``. Nothing else ever shows a traceback."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from quotaflow.errors import BadRequest, QuotaflowError

log = logging.getLogger("quotaflow.web")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(
    obj: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj), status=status, headers=headers, content_type="application/json"
    )


def error_response(request: web.Request, err: QuotaflowError) -> web.Response:
    if request.path.startswith("/api"):
        body: dict[str, Any] = {
            "success": False,
            "message": err.message,
            "error": err.code or err.type,
        }
        if err.details:
            body["details"] = err.details
        return json_response(body, err.status, err.headers)
    upstream = getattr(err, "upstream_body", None)
    if isinstance(upstream, dict) and isinstance(upstream.get("error"), dict):
        body = {"error": dict(upstream["error"])}
        if err.details:
            body["error"]["quotaflow"] = err.details
    else:
        body = err.to_openai()
    body = door_error(request.method, request.path, err.status, body)
    return json_response(body, err.status, err.headers)


def door_of(method: str, path: str) -> str:
    """The door a model request came in by, as the ledger and the access line name it."""
    if path.startswith("/v1/messages"):
        return "messages"
    if path.startswith("/v1beta/") or (path.startswith("/v1/models/") and method == "POST"):
        return "gemini"
    if path.startswith("/v1/responses"):
        return "responses"
    if path.startswith("/v1/embeddings"):
        return "embeddings"
    return "chat"


def door_error(method: str, path: str, status: int, body: dict[str, Any]) -> dict[str, Any]:
    """The error in the shape of the door it is answered through (OpenAI's by default)."""
    if path.startswith("/v1/messages"):
        from quotaflow.adapters.doors import messages

        return messages.error_body(status, body["error"])
    if path.startswith("/v1beta/") or (path.startswith("/v1/models/") and method == "POST"):
        from quotaflow.adapters.doors import gemini

        return gemini.error_body(status, body["error"])
    return body


_HTTP_KIND = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def exception_response(request: web.Request, exc: Exception) -> web.Response:
    """The error response for anything a handler raised (HTTP redirects excepted)."""
    if isinstance(exc, QuotaflowError):
        return error_response(request, exc)
    if isinstance(exc, web.HTTPException):
        http_err = BadRequest(exc.reason or "error", code=_HTTP_KIND.get(exc.status))
        http_err.status = exc.status
        if exc.status == 404:
            http_err.message = f"no such endpoint: {request.method} {request.path}"
        elif exc.status == 405:
            http_err.message = f"method {request.method} is not allowed on {request.path}"
        return error_response(request, http_err)
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return error_response(request, QuotaflowError("internal error (logged on the server)"))
