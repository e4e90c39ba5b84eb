"""``/v1``: the OpenAI-compatible proxy."""

from __future__ import annotations

from aiohttp import web

from quotaflow.gateway import CallContext, Gateway
from quotaflow.streaming import CLIENT_GONE
from quotaflow.web.body import read_json
from quotaflow.web.errors import json_response
from quotaflow.web.keys import GATEWAY

AGENT_HEADER = "x-quotaflow-agent"


def context_of(request: web.Request, body: object) -> CallContext:
    agent = request.headers.get(AGENT_HEADER)
    if not agent and isinstance(body, dict) and isinstance(body.get("user"), str):
        agent = body["user"]
    return CallContext(agent=(agent or "default")[:128])


async def chat_completions(request: web.Request) -> web.StreamResponse:
    gw: Gateway = request.app[GATEWAY]
    body = await read_json(request, gw.config.server.max_body_bytes)
    ctx = context_of(request, body)
    if isinstance(body, dict) and body.get("stream") is True:
        stream = await gw.open_stream(body, ctx)
        resp = web.StreamResponse(status=200, headers={
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            **stream.headers,
            "x-quotaflow-attempts": str(len(stream.attempts)),
        })  # fmt: skip
        try:
            await resp.prepare(request)
        except CLIENT_GONE:
            await stream.abandon()
            return resp
        await stream.pump(resp.write)
        return resp
    outcome = await gw.chat(body, ctx)
    return json_response(outcome.body, headers=outcome.headers())


async def list_models(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    data = []
    for name, route in gw.config.routes.items():
        owners = sorted({d.provider for d in route.deployments})
        data.append(
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": ",".join(owners) or "quotaflow",
            }
        )
    return json_response({"object": "list", "data": data})
