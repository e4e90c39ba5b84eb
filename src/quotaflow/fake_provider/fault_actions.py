"""What each injected fault kind does to the request that picks it up.

* ``status`` — the protocol's real error body for ``status`` (``retry_after`` → ``retry-after``
  header, or Gemini's ``RetryInfo``).
* ``timeout`` — accept the request and never answer: wait until the client hangs up, the
  server shuts down, or :data:`HANG_LIMIT_S` passes, then drop the connection.
* ``cut_stream`` — a stream stops after ``after_chunks`` content chunks and the connection
  closes with no terminator; a non-stream response closes halfway through its body.
* ``malformed`` — a 200 whose body (or, for a stream, whose first event) is not JSON.
* ``redirect`` — a ``status`` 3xx (302 by default) pointing elsewhere, as a misconfigured
  base URL or a captive proxy answers.
* ``reset_connection`` — the TCP connection is reset (RST) before any response byte.
* ``context_length`` — the protocol's real "prompt longer than the context window" 400.
* ``content_filter`` — the protocol's real content-filter refusal: OpenAI's (Azure-style)
  400 ``code: content_filter``; Anthropic's 200 with ``stop_reason: refusal`` and no
  content; Gemini's 200 with ``promptFeedback.blockReason: SAFETY`` and no candidates.

A faulted request is counted as an error and charges no tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from aiohttp import web

from quotaflow.fake_provider.faults import Fault
from quotaflow.fake_provider.protocol import JSON_TYPE, ApiError, ChatRequest, WireProtocol
from quotaflow.fake_provider.reply import Reply
from quotaflow.fake_provider.sse import close_connection, write_stream
from quotaflow.fake_provider.state import FakeProviderState

HANG_LIMIT_S = 300.0
HANG_POLL_S = 0.05


async def apply_fault(
    state: FakeProviderState,
    proto: WireProtocol,
    request: web.Request,
    req: ChatRequest,
    fault: Fault,
    reply: Reply,
) -> web.StreamResponse:
    """Answer ``req`` the way ``fault`` says (see the module docstring)."""
    if fault.kind == "status":
        return proto.status_error(req, fault.status, fault.retry_after).response()
    if fault.kind == "context_length":
        return proto.context_length_error(req).response()
    if fault.kind == "content_filter":
        return await _filtered(proto, request, req)
    if fault.kind == "reset_connection":
        reset_connection(request)
        return web.Response()
    if fault.kind == "redirect":
        return web.Response(status=fault.status, headers={"Location": "https://login.example/"})
    if fault.kind == "timeout":
        await hang(state, request)
        reset_connection(request)
        return web.Response()
    if state.config.latency_ms > 0:
        await asyncio.sleep(state.config.latency_ms / 1000)
    if fault.kind == "malformed":
        return await _malformed(proto, request, req)
    return await _cut(state, proto, request, req, reply, fault.after_chunks)


def reset_connection(request: web.BaseRequest) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), discarding anything unsent."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def hang(state: FakeProviderState, request: web.BaseRequest) -> None:
    """Wait until the client disconnects, the server stops, or :data:`HANG_LIMIT_S` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG_LIMIT_S
    while loop.time() < deadline and not state.closing.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.closing.wait(), HANG_POLL_S)


async def _filtered(
    proto: WireProtocol, request: web.Request, req: ChatRequest
) -> web.StreamResponse:
    refusal = proto.content_filter(req)
    if isinstance(refusal, ApiError):
        return refusal.response()
    headers = proto.headers(req)
    if not req.stream:
        headers["Content-Type"] = JSON_TYPE
        return web.Response(body=refusal[0], headers=headers)
    headers["Content-Type"] = proto.stream_content_type if req.sse else JSON_TYPE
    resp, _ = await write_stream(request, headers, refusal[1], chunk_delay_s=0.0)
    return resp


async def _malformed(
    proto: WireProtocol, request: web.Request, req: ChatRequest
) -> web.StreamResponse:
    headers = proto.headers(req)
    if not req.stream:
        headers["Content-Type"] = JSON_TYPE
        return web.Response(body=proto.malformed(req), headers=headers)
    headers["Content-Type"] = proto.stream_content_type if req.sse else JSON_TYPE
    resp = web.StreamResponse(status=200, headers=headers)
    await resp.prepare(request)
    await resp.write(proto.malformed(req))
    await resp.write_eof()
    return resp


async def _cut(
    state: FakeProviderState,
    proto: WireProtocol,
    request: web.Request,
    req: ChatRequest,
    reply: Reply,
    after_chunks: int,
) -> web.StreamResponse:
    headers = proto.headers(req)
    if req.stream:
        headers["Content-Type"] = proto.stream_content_type if req.sse else JSON_TYPE
        plan = proto.stream_plan(req, reply)
        delay_s = state.config.chunk_delay_ms / 1000
        resp, _ = await write_stream(
            request, headers, plan, chunk_delay_s=delay_s, cut_after=after_chunks
        )
        return resp
    body = proto.render(req, reply)
    headers["Content-Type"] = JSON_TYPE
    resp = web.StreamResponse(status=200, headers=headers)
    resp.content_length = len(body)
    await resp.prepare(request)
    await resp.write(body[: len(body) // 2])
    close_connection(request)
    return resp
