"""``POST /v1/responses``: the OpenAI Responses door (stateless)."""

from __future__ import annotations

from aiohttp import web

from quotaflow.adapters.doors import responses as door
from quotaflow.gateway import Gateway
from quotaflow.web.api.doors import read_door, serve
from quotaflow.web.body import read_json
from quotaflow.web.state import GATEWAY


async def create_response(request: web.Request) -> web.StreamResponse:
    gw: Gateway = request.app[GATEWAY]
    body = await read_json(request, gw.config.server.max_body_bytes)
    chat_body = read_door(door.to_chat_request, body)
    envelope = door.Envelope(body, int(gw.clock.now()))
    skipped = envelope.tools.skipped
    return await serve(
        request,
        "responses",
        chat_body,
        door.ResponsesDoor(envelope, chat_body["model"]),
        headers={"x-quotaflow-tools-skipped": ",".join(skipped)} if skipped else None,
    )
