"""Native passthrough: a door's request sent unchanged to a provider of the same protocol.

The client's body goes upstream with only ``model`` set to the deployment's (and the
completion cap lowered when a reservation had to clamp it); the provider's answer comes
back as it was sent, and a stream's events are forwarded one by one. The protocol's own
stream translator still reads every event, for the usage the ledger books (Anthropic's
input, cache writes and cache reads; Gemini's ``usageMetadata``) and for a cut or an
``error`` event, which the door reports its own way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from quotaflow.adapters.anthropic import (
    ANTHROPIC_VERSION,
    AnthropicStream,
    anthropic_rate_info,
    classify_anthropic_error,
    usage_from_anthropic,
)
from quotaflow.adapters.base import (
    CallTarget,
    ChatResult,
    Headers,
    MalformedResponse,
    RateInfo,
    SSEEvent,
    StreamState,
    StreamTranslator,
    UpstreamCall,
    UpstreamFailure,
    load_json_object,
)
from quotaflow.adapters.doors.base import named_event
from quotaflow.adapters.doors.wrap import cut_message
from quotaflow.adapters.translate import copy_headers
from quotaflow.engine.tokens import estimate_completion_tokens
from quotaflow.types import Usage

# Client headers an Anthropic key is sent with as they came: the API version and the betas
# the client opted into (Claude Code sends several).
ANTHROPIC_FORWARDED = ("anthropic-version", "anthropic-beta")


class _Forwarding:
    """Reads every event with the protocol's translator (for usage and errors) and forwards
    the event itself."""

    def __init__(self, inner: StreamTranslator) -> None:
        self._inner = inner
        self.state: StreamState = inner.state  # the same object: the inner translator fills it

    def feed(self, event: SSEEvent) -> list[bytes]:
        self._inner.feed(event)
        if self._inner.state.error is not None:
            return []  # reported by failed(), once, after the booking
        return self.forward(event)

    def forward(self, event: SSEEvent) -> list[bytes]:
        raise NotImplementedError


class AnthropicForwarding(_Forwarding):
    def forward(self, event: SSEEvent) -> list[bytes]:
        if not event.data:
            return []
        name = (event.event or "message").encode()
        return [b"event: " + name + b"\ndata: " + event.data.encode() + b"\n\n"]

    def closing(self) -> bytes:
        return b""  # message_stop came from the provider

    def failed(self, failure: UpstreamFailure) -> bytes:
        error = {"type": "api_error", "message": cut_message(failure)["message"]}
        return named_event("error", {"type": "error", "error": error})


class AnthropicNative:
    """A Messages request sent as is to an Anthropic key."""

    protocol: ClassVar[str] = "anthropic"

    def __init__(self, native: Mapping[str, Any], client_headers: Mapping[str, str]) -> None:
        self._native = native
        self._headers = {h: client_headers[h] for h in ANTHROPIC_FORWARDED if client_headers.get(h)}

    def build_request(
        self, body: Mapping[str, Any], target: CallTarget, *, max_tokens: int | None, stream: bool
    ) -> UpstreamCall:
        out = {**self._native, "model": target.model}
        asked = out.get("max_tokens")
        if max_tokens is not None and isinstance(asked, int) and max_tokens < asked:
            out["max_tokens"] = max_tokens
        headers = {
            "x-api-key": target.secret,
            "anthropic-version": ANTHROPIC_VERSION,
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
            **self._headers,
        }
        copy_headers(headers, target.headers)
        url = target.base_url.rstrip("/") + "/v1/messages"
        return UpstreamCall(url, headers, orjson.dumps(out), stream)

    def parse_response(
        self, status: int, headers: Headers, body: bytes, model: str, created: int = 0
    ) -> ChatResult:
        obj = load_json_object(body)
        if obj.get("type") == "error":
            raise MalformedResponse("the provider answered 2xx with an error")
        usage = usage_from_anthropic(obj.get("usage"))
        if usage is None:
            produced = estimate_completion_tokens(orjson.dumps(obj.get("content")).decode())
            usage = Usage(0, produced, estimated=True)
        return ChatResult(obj, usage, str(obj.get("stop_reason") or ""))

    def stream_translator(
        self, model: str, include_usage: bool, created: int = 0
    ) -> AnthropicForwarding:
        return AnthropicForwarding(AnthropicStream(model, True, created))

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamFailure:
        return classify_anthropic_error(status, headers, body)

    def rate_info(self, headers: Headers) -> RateInfo | None:
        return anthropic_rate_info(headers)


class GeminiForwarding(_Forwarding):
    def __init__(self, inner: StreamTranslator, sse: bool) -> None:
        super().__init__(inner)
        self._sse = sse
        self._sent = 0

    def forward(self, event: SSEEvent) -> list[bytes]:
        if not event.data:
            return []
        self._sent += 1
        data = event.data.encode()
        if self._sse:
            return [b"data: " + data + b"\r\n\r\n"]
        return [(b"[" if self._sent == 1 else b",\r\n") + data]

    def closing(self) -> bytes:
        if self._sse:
            return b""
        return b"]" if self._sent else b"[]"

    def failed(self, failure: UpstreamFailure) -> bytes:
        error = {"code": 502, "message": cut_message(failure)["message"], "status": "UNAVAILABLE"}
        data = orjson.dumps({"error": error})
        if self._sse:
            return b"data: " + data + b"\r\n\r\n"
        return (b"[" if not self._sent else b",\r\n") + data + b"]"


class GeminiNative:
    """A ``generateContent`` request sent as is to a Gemini key."""

    protocol: ClassVar[str] = "gemini"

    def __init__(self, native: Mapping[str, Any], sse: bool) -> None:
        from quotaflow.adapters.gemini import ADAPTER

        self._native = native
        self._sse = sse
        self._gemini = ADAPTER

    def build_request(
        self, body: Mapping[str, Any], target: CallTarget, *, max_tokens: int | None, stream: bool
    ) -> UpstreamCall:
        out = dict(self._native)
        gen = out.get("generationConfig") or out.get("generation_config")
        if max_tokens is not None and isinstance(gen, Mapping):
            asked = gen.get("maxOutputTokens", gen.get("max_output_tokens"))
            if isinstance(asked, int) and max_tokens < asked:
                out["generationConfig"] = {**gen, "maxOutputTokens": max_tokens}
                out.pop("generation_config", None)
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        headers = {"x-goog-api-key": target.secret, "content-type": "application/json"}
        copy_headers(headers, target.headers)
        url = f"{target.base_url.rstrip('/')}/models/{target.model}:{method}"
        return UpstreamCall(url, headers, orjson.dumps(out), stream)

    def parse_response(
        self, status: int, headers: Headers, body: bytes, model: str, created: int = 0
    ) -> ChatResult:
        from quotaflow.adapters.gemini import usage_from_gemini

        obj = load_json_object(body)
        usage = usage_from_gemini(obj.get("usageMetadata"))
        if usage is None:
            produced = estimate_completion_tokens(orjson.dumps(obj.get("candidates")).decode())
            usage = Usage(0, produced, estimated=True)
        return ChatResult(obj, usage)

    def stream_translator(
        self, model: str, include_usage: bool, created: int = 0
    ) -> GeminiForwarding:
        inner = self._gemini.stream_translator(model, True, created)
        return GeminiForwarding(inner, self._sse)

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamFailure:
        return self._gemini.classify_error(status, headers, body)

    def rate_info(self, headers: Headers) -> RateInfo | None:
        return self._gemini.rate_info(headers)
