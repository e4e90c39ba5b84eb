"""``POST /v1/messages`` (Anthropic Messages) and ``POST /v1/messages/count_tokens``."""

from __future__ import annotations

from aiohttp import web

from quotaflow.adapters.doors import messages as door
from quotaflow.adapters.doors.count_tokens import CountTokensDoor
from quotaflow.engine.tokens import estimate_prompt_tokens
from quotaflow.gateway import Gateway
from quotaflow.web.api.doors import read_door, serve
from quotaflow.web.api.openai import context_of
from quotaflow.web.body import read_json
from quotaflow.web.errors import json_response
from quotaflow.web.state import GATEWAY


async def create_message(request: web.Request) -> web.StreamResponse:
    gw: Gateway = request.app[GATEWAY]
    body = await read_json(request, gw.config.server.max_body_bytes)
    chat_body = read_door(door.to_chat_request, body)
    return await serve(request, "messages", chat_body, door.MessagesDoor(body, request.headers))


async def count_tokens(request: web.Request) -> web.Response:
    """Counted by an Anthropic key of the model's route (reserved and booked like any call),
    else estimated by quotaflow's own rule (the one reservations use), and marked so."""
    gw: Gateway = request.app[GATEWAY]
    body = await read_json(request, gw.config.server.max_body_bytes)
    if isinstance(body, dict):
        body = {**body, "max_tokens": 1}  # what count_tokens does not take; the reading needs it
    chat_body = read_door(door.to_chat_request, body)
    route = gw.config.route(chat_body["model"])
    protocols = (
        {gw.config.providers[d.provider].protocol for d in route.deployments} if route else set()
    )
    if "anthropic" in protocols:
        ctx = await context_of(request, chat_body, "messages")
        outcome = await gw.chat(chat_body, ctx, door=CountTokensDoor(body, request.headers))
        return json_response(outcome.body, headers=outcome.headers())
    tokens = estimate_prompt_tokens(chat_body)
    return json_response(
        {"input_tokens": tokens, "estimated": True}, headers={"x-quotaflow-estimated": "true"}
    )
