"""``POST /v1/embeddings``: OpenAI's embeddings, routed across the providers that embed."""

from __future__ import annotations

from aiohttp import web

from quotaflow.gateway import Gateway
from quotaflow.web.api.openai import context_of
from quotaflow.web.body import read_json
from quotaflow.web.errors import json_response
from quotaflow.web.state import GATEWAY


async def create_embedding(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    body = await read_json(request, gw.config.server.max_body_bytes)
    # The agent is found as for a chat (its key, or the ``user`` field); a chat's token cap
    # has nothing to cap here, so it is shown a body with no messages.
    user = body.get("user") if isinstance(body, dict) else None
    ctx = await context_of(request, {"user": user}, "embeddings")
    outcome = await gw.embed(body, ctx)
    return json_response(outcome.body, headers=outcome.headers())
