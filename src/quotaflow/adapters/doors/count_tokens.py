"""``POST /v1/messages/count_tokens``: counted by an Anthropic key when the route has one.

The count goes through the gateway like any call (a reservation, one attempt per key, a
ledger row of zero tokens: counting is free, but it is a request the key's rate limits
see); only Anthropic keys can count, so other deployments are never tried. Without one the
web layer answers with quotaflow's own estimate and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from quotaflow.adapters.anthropic import (
    ANTHROPIC_VERSION,
    anthropic_rate_info,
    classify_anthropic_error,
)
from quotaflow.adapters.base import (
    Adapter,
    CallTarget,
    ChatResult,
    Headers,
    MalformedResponse,
    RateInfo,
    StreamTranslator,
    UpstreamCall,
    UpstreamFailure,
    load_json_object,
)
from quotaflow.adapters.doors.native import ANTHROPIC_FORWARDED
from quotaflow.adapters.translate import copy_headers
from quotaflow.errors import BadRequest
from quotaflow.types import Usage

# The Messages fields count_tokens takes; the others (max_tokens, stream, sampling) are
# refused by it.
COUNTED = ("model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers")


class AnthropicCount:
    protocol: ClassVar[str] = "anthropic"

    def __init__(self, native: Mapping[str, Any], client_headers: Mapping[str, str]) -> None:
        self._body = {k: v for k, v in native.items() if k in COUNTED}
        self._headers = {h: client_headers[h] for h in ANTHROPIC_FORWARDED if client_headers.get(h)}

    def build_request(
        self, body: Mapping[str, Any], target: CallTarget, *, max_tokens: int | None, stream: bool
    ) -> UpstreamCall:
        headers = {
            "x-api-key": target.secret,
            "anthropic-version": ANTHROPIC_VERSION,
            "content-type": "application/json",
            **self._headers,
        }
        copy_headers(headers, target.headers)
        url = target.base_url.rstrip("/") + "/v1/messages/count_tokens"
        return UpstreamCall(
            url, headers, orjson.dumps({**self._body, "model": target.model}), False
        )

    def parse_response(
        self, status: int, headers: Headers, body: bytes, model: str, created: int = 0
    ) -> ChatResult:
        obj = load_json_object(body)
        if not isinstance(obj.get("input_tokens"), int):
            raise MalformedResponse("the provider's answer has no input_tokens")
        return ChatResult(obj, Usage(0, 0))  # counting uses no tokens

    def stream_translator(
        self, model: str, include_usage: bool, created: int = 0
    ) -> StreamTranslator:
        raise BadRequest("count_tokens is never streamed", param="stream")

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamFailure:
        return classify_anthropic_error(status, headers, body)

    def rate_info(self, headers: Headers) -> RateInfo | None:
        return anthropic_rate_info(headers)


class CountTokensDoor:
    """Only Anthropic keys count tokens."""

    model_kind = "chat"

    def __init__(self, native: Mapping[str, Any], client_headers: Mapping[str, str]) -> None:
        self._native = native
        self._headers = client_headers

    def adapter(self, protocol: str) -> Adapter | None:
        return AnthropicCount(self._native, self._headers) if protocol == "anthropic" else None
