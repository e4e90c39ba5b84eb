"""Anthropic's ``POST /v1/messages/count_tokens`` on the fake provider.

The body is a Messages request without ``max_tokens``; the answer is ``{"input_tokens": N}``
by the fake's own counting rule (the same ``N`` a Messages call would report). Keys and
rate limits are checked as on ``/v1/messages``; counting charges no tokens.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from quotaflow.fake_provider.admission import admit
from quotaflow.fake_provider.protocol import JSON_TYPE, ApiError, WireProtocol
from quotaflow.fake_provider.state import FakeProviderState


def count_tokens_route(state: FakeProviderState, proto: WireProtocol) -> web.RouteDef:
    async def count(request: web.Request) -> web.StreamResponse:
        try:
            raw = await request.read()
            data = orjson.loads(raw)
            if not isinstance(data, dict) or "max_tokens" in data:
                raise proto.invalid_request("max_tokens: Extra inputs are not permitted")
            key = proto.extract_key(request)
            req = proto.parse(request, orjson.dumps({**data, "max_tokens": 1}), key or "")
            admit(state, proto, key, req.model, req.prompt_tokens)
        except ApiError as err:
            return err.response()
        except orjson.JSONDecodeError:
            return proto.invalid_request("the body must be valid JSON").response()
        state.record_success(req.key, req.model, 0, 0)
        body = orjson.dumps({"input_tokens": req.prompt_tokens})
        return web.Response(body=body, headers={"Content-Type": JSON_TYPE})

    return web.post("/v1/messages/count_tokens", count)
