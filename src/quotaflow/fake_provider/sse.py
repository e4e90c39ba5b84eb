"""Server-sent-event framing and the stream writer.

The three providers frame SSE differently (see PROVIDER_FORMATS.md): OpenAI sends
``data: JSON\\n\\n`` and ends with ``data: [DONE]``; Anthropic names each event
(``event: NAME\\ndata: JSON\\n\\n``); Gemini sends ``data: JSON\\r\\n\\r\\n`` and simply
closes the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from aiohttp import web

from quotaflow.fake_provider.protocol import StreamPlan


def data_frame(payload: object) -> bytes:
    """``data: JSON\\n\\n`` (OpenAI)."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def event_frame(name: bytes, payload: object) -> bytes:
    """``event: NAME\\ndata: JSON\\n\\n`` (Anthropic)."""
    return b"event: " + name + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def crlf_data_frame(payload: object) -> bytes:
    """``data: JSON\\r\\n\\r\\n`` (Gemini)."""
    return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    """How far a stream got: content frames written and whether it ended properly."""

    content_sent: int
    completed: bool


def close_connection(request: web.BaseRequest) -> None:
    """Close the connection after what was written so far, without finishing the response."""
    transport = request.transport
    if transport is not None:
        transport.close()


async def write_stream(
    request: web.Request,
    headers: Mapping[str, str],
    plan: StreamPlan,
    *,
    chunk_delay_s: float,
    cut_after: int | None = None,
) -> tuple[web.StreamResponse, StreamOutcome]:
    """Send ``plan`` as a chunked 200 response.

    With ``cut_after`` the connection is closed right after that many content frames: no
    tail, no chunked-encoding terminator, as when a provider's stream breaks. Without delays
    the whole stream goes out in one write (the benchmarks' hot path).
    """
    resp = web.StreamResponse(status=200, headers=headers)
    sent = 0
    try:
        await resp.prepare(request)
        if cut_after is not None:
            content = plan.content[:cut_after]
            await resp.write(b"".join(plan.head) + b"".join(content[:1]))
            for frame in content[1:]:
                if chunk_delay_s:
                    await asyncio.sleep(chunk_delay_s)
                await resp.write(frame)
            close_connection(request)
            return resp, StreamOutcome(len(content), completed=False)
        if not chunk_delay_s:
            await resp.write(b"".join((*plan.head, *plan.content, *plan.tail)))
            sent = len(plan.content)
        else:
            await resp.write(b"".join(plan.head) + b"".join(plan.content[:1]))
            sent = min(1, len(plan.content))
            for frame in plan.content[1:]:
                await asyncio.sleep(chunk_delay_s)
                await resp.write(frame)
                sent += 1
            if plan.tail:
                await asyncio.sleep(chunk_delay_s)
                await resp.write(b"".join(plan.tail))
        await resp.write_eof()
    except ConnectionError:
        return resp, StreamOutcome(sent, completed=False)
    return resp, StreamOutcome(sent, completed=True)
