"""What the doors share: one call through the gateway, answered plain or streamed.

A door hands over the OpenAI chat body it read its request as (what the gateway reserves,
routes and estimates by) and its :class:`~quotaflow.adapters.doors.wrap.Door`, which gives
each provider's adapter: native for the door's own protocol, translated for the others. The
call goes through the same agent context, reservation, routing, fallback and ledger as
``/v1/chat/completions`` and keeps its ``x-quotaflow-*`` headers; the answer and the stream
come out of the adapters already in the door's protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from quotaflow.adapters.doors.wrap import Door
from quotaflow.errors import BadRequest
from quotaflow.gateway import Gateway
from quotaflow.gateway.streaming import CLIENT_GONE
from quotaflow.web.api.openai import context_of
from quotaflow.web.errors import json_response
from quotaflow.web.state import GATEWAY

SSE = "text/event-stream; charset=utf-8"
_T = TypeVar("_T")


def read_door(read: Callable[..., _T], *args: Any) -> _T:
    """A door's reading of its request; a field of an unexpected JSON type (that its checks
    did not foresee) is the client's error, as the providers' own APIs answer it."""
    try:
        return read(*args)
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        raise BadRequest(f"invalid request body: {type(exc).__name__}: {exc}") from None


async def serve(
    request: web.Request,
    name: str,
    chat_body: dict[str, Any],
    door: Door,
    content_type: str = SSE,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Answer through the gateway; ``chat_body["stream"]`` says whether it streams;
    ``headers`` go on the answer besides the gateway's own."""
    gw: Gateway = request.app[GATEWAY]
    ctx = await context_of(request, chat_body, name)
    if not chat_body.get("stream"):
        outcome = await gw.chat(chat_body, ctx, door=door)
        return json_response(outcome.body, headers={**outcome.headers(), **(headers or {})})
    stream = await gw.open_stream(chat_body, ctx, door=door)
    resp = web.StreamResponse(
        status=200,
        headers={
            "content-type": content_type,
            "cache-control": "no-cache",
            **stream.headers,
            "x-quotaflow-attempts": str(len(stream.attempts)),
            **(headers or {}),
        },
    )
    try:
        await resp.prepare(request)
    except CLIENT_GONE:
        await stream.abandon()
        return resp
    await stream.pump(resp.write)
    return resp
