"""The chat endpoint shared by all protocols: key → validation → fault → quota → rate limit → reply.

Order of checks, each answered in the protocol's own format: a missing or unknown key
(auth error), an invalid request (400), a queued fault, an exhausted quota, the per-minute
rate limit. Only then is the reply planned, delayed by ``latency_ms`` and sent; its tokens
are charged once it has been sent (a stream the client drops is charged for what it got).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from quotaflow.fake_provider.fault_actions import apply_fault
from quotaflow.fake_provider.json_reply import forced_call, json_text
from quotaflow.fake_provider.protocol import JSON_TYPE, ApiError, ChatRequest, Handler, WireProtocol
from quotaflow.fake_provider.reply import Reply, plan_reply
from quotaflow.fake_provider.sse import write_stream
from quotaflow.fake_provider.state import FakeProviderState


def make_chat_handler(state: FakeProviderState, proto: WireProtocol) -> Handler:
    """The aiohttp handler of ``proto``'s chat endpoint."""

    async def chat(request: web.Request) -> web.StreamResponse:
        try:
            req = _parse(state, proto, request, await request.read())
            if state.faults:
                fault = state.faults.take(req.key, req.model)
                if fault is not None:
                    state.record_error(req.key, req.model)
                    return await apply_fault(
                        state, proto, request, req, fault, reply_for(state, req)
                    )
            _check_limits(state, proto, req)
        except ApiError as err:
            return err.response()
        reply = reply_for(state, req)
        latency_ms = state.config.latency_ms
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000)
        if req.stream:
            return await _stream(state, proto, request, req, reply)
        body = proto.render(req, reply)
        state.record_success(req.key, req.model, req.prompt_tokens, reply.completion_tokens)
        headers = proto.headers(req)
        headers["Content-Type"] = JSON_TYPE
        return web.Response(body=body, headers=headers)

    return chat


def reply_for(state: FakeProviderState, req: ChatRequest) -> Reply:
    """Plan the fake model's answer to ``req`` under the current config."""
    return plan_reply(
        last_user_text=req.last_user_text,
        last_is_user=req.last_is_user,
        tool_name=req.tool_name,
        max_tokens=req.max_tokens,
        completion_tokens=state.config.completion_tokens,
        json_text=json_text(req.json_schema) if req.json_mode else None,
        forced_call=forced_call(req.forced_tool),
    )


def _parse(
    state: FakeProviderState, proto: WireProtocol, request: web.Request, body: bytes
) -> ChatRequest:
    key = proto.extract_key(request)
    try:
        check = state.check_key(key)
        if check == "missing" or key is None:
            raise proto.missing_key_error()
        if check == "invalid":
            raise proto.invalid_key_error(key)
        try:
            return proto.parse(request, body, key)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            # A field of an unexpected JSON type the checks above did not anticipate:
            # the real APIs answer 400, never 500.
            raise proto.invalid_request(f"Invalid request body: {exc}") from None
    except ApiError:
        state.record_error(key, None)
        raise


def _check_limits(state: FakeProviderState, proto: WireProtocol, req: ChatRequest) -> None:
    if state.is_exhausted(req.key):
        state.record_error(req.key, req.model)
        raise proto.quota_error(req)
    config = state.config
    refusal = state.limiter.admit(req.key, state.monotonic(), config.rpm, config.tpm)
    if refusal is not None:
        state.record_error(req.key, req.model)
        raise proto.rate_limit_error(req, refusal)


async def _stream(
    state: FakeProviderState,
    proto: WireProtocol,
    request: web.Request,
    req: ChatRequest,
    reply: Reply,
) -> web.StreamResponse:
    headers = proto.headers(req)
    headers["Content-Type"] = proto.stream_content_type if req.sse else JSON_TYPE
    plan = proto.stream_plan(req, reply)
    resp, outcome = await write_stream(
        request, headers, plan, chunk_delay_s=state.config.chunk_delay_ms / 1000
    )
    completion = reply.completion_tokens
    if not outcome.completed:
        completion = min(completion, outcome.content_sent)
    state.record_success(req.key, req.model, req.prompt_tokens, completion)
    return resp
