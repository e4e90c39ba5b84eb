"""``GET /openapi.json``: the OpenAPI 3.1 description of every ``/api`` and ``/v1`` endpoint."""

from __future__ import annotations

from aiohttp import web

from quotaflow._version import __version__
from quotaflow.web.api.openapi_spec import build_spec
from quotaflow.web.errors import json_response


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(build_spec(__version__))
