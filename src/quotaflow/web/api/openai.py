"""``/v1``: the OpenAI-compatible proxy."""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from quotaflow.engine.catalog import Route
from quotaflow.errors import Unauthorized
from quotaflow.gateway import CallContext, Gateway
from quotaflow.gateway.streaming import CLIENT_GONE
from quotaflow.services.agents import apply_token_cap, context_for
from quotaflow.web.auth import caller_of, named_agent
from quotaflow.web.body import read_json
from quotaflow.web.connections import still_connected
from quotaflow.web.errors import json_response
from quotaflow.web.state import GATEWAY, RUNTIME

AGENT_HEADER = "x-quotaflow-agent"


async def context_of(request: web.Request, body: object, door: str = "chat") -> CallContext:
    """The caller's agent (web/auth.py): its key's, else — when the operator allows it —
    the ``X-Quotaflow-Agent`` header's or the OpenAI ``user`` field's, else "default".
    Anonymous callers are refused when agent keys are required. ``door``: the door it came
    in by. The gateway can ask it whether the client is still connected."""
    mg = request.app[RUNTIME]
    caller = caller_of(request)
    if caller.agent is None and caller.kind != "admin" and mg.agents_need_keys:
        raise Unauthorized(
            "this gateway needs an agent key: send 'Authorization: Bearer qf-…' "
            "(create one with POST /api/agents)"
        )
    named, param = request.headers.get(AGENT_HEADER), AGENT_HEADER
    if not named and isinstance(body, dict) and isinstance(body.get("user"), str):
        named, param = body["user"], "user"
    agent, name = named_agent(request, caller, named, param)
    apply_token_cap(agent, body)
    who = agent.name if agent else name
    ctx, _ = await context_for(mg.gateway, agent, who, door, request.headers.get("traceparent"))
    return replace(ctx, connected=still_connected(request))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    gw: Gateway = request.app[GATEWAY]
    body = await read_json(request, gw.config.server.max_body_bytes)
    ctx = await context_of(request, body)
    if isinstance(body, dict) and body.get("stream") is True:
        stream = await gw.open_stream(body, ctx)
        resp = web.StreamResponse(
            status=200,
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                **stream.headers,
                "x-quotaflow-attempts": str(len(stream.attempts)),
            },
        )
        try:
            await resp.prepare(request)
        except CLIENT_GONE:
            await stream.abandon()
            return resp
        await stream.pump(resp.write)
        return resp
    outcome = await gw.chat(body, ctx)
    return json_response(outcome.body, headers=outcome.headers())


def model_object(name: str, route: Route) -> dict[str, object]:
    """An OpenAI ``model`` object for ``name``, owned by the providers that serve it."""
    owners = sorted({d.provider for d in route.deployments})
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": ",".join(owners) or "quotaflow",
        "doors": doors_of(route),
    }


async def list_models(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    data = [model_object(name, route) for name, route in gw.config.routes.items()]
    # The catalog above; other names that match a provider's patterns (or provider/model)
    # are passed through to that provider.
    passes = gw.config.pass_through()
    return json_response(
        {
            "object": "list",
            "data": data,
            "pass_through": {
                "providers": passes,
                "note": "models not listed are forwarded to the provider whose name patterns "
                "match them; 'provider/model' names the provider explicitly",
            },
        }
    )


async def retrieve_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{model}``: the model as ``/v1/models`` lists it, or as it would be
    routed (a name a provider's patterns take, ``provider/model``, an alias); else 404."""
    gw: Gateway = request.app[GATEWAY]
    name = request.match_info["target"]
    return json_response(model_object(name, gw.resolve_route(name)))


CHAT_DOORS = ("chat", "messages", "responses", "gemini")


def doors_of(route: Route) -> list[str]:
    """The doors a route can be reached through: embeddings for embedding models, every
    conversational door (each translated onto any protocol) for the others."""
    kinds = {d.model.kind for d in route.deployments}
    out = list(CHAT_DOORS) if "chat" in kinds else []
    return [*out, "embeddings"] if "embedding" in kinds else out
