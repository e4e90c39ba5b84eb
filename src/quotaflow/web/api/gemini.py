"""``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent`` (also under
``/v1/models/…``, the ``google-genai`` SDK's default): Gemini's own API as a door."""

from __future__ import annotations

from aiohttp import web

from quotaflow.adapters.doors import gemini as door
from quotaflow.errors import NotFound
from quotaflow.gateway import Gateway
from quotaflow.web.api.doors import SSE, read_door, serve
from quotaflow.web.body import read_json
from quotaflow.web.state import GATEWAY

METHODS = ("generateContent", "streamGenerateContent")


async def generate(request: web.Request) -> web.StreamResponse:
    gw: Gateway = request.app[GATEWAY]
    model, _, method = request.match_info["target"].partition(":")
    model = model.removeprefix("models/")
    if method not in METHODS or not model:
        raise NotFound(f"no such method: {request.match_info['target']!r}")
    body = await read_json(request, gw.config.server.max_body_bytes)
    streamed = method == "streamGenerateContent"
    chat_body = read_door(door.to_chat_request, body, model, streamed)
    sse = request.query.get("alt") == "sse"
    return await serve(
        request, "gemini", chat_body, door.GeminiDoor(body, model, sse),
        SSE if sse else "application/json",
    )  # fmt: skip
