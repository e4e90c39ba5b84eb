"""The ``openai`` protocol: OpenAI chat completions and every compatible provider.

Requests pass through with every unknown field and tool call intact; only ``model``, the
completion cap and (for streams) ``stream_options.include_usage`` are set, the last so
that a stream's usage is always known.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, ClassVar, TypeGuard

import orjson

from quotaflow.adapters.base import (
    CallTarget,
    ChatResult,
    ErrorKind,
    Headers,
    MalformedResponse,
    RateInfo,
    SSEEvent,
    StreamState,
    UpstreamCall,
    UpstreamFailure,
    load_json_object,
    redirect_failure,
    retry_after_seconds,
    sse_frame,
)
from quotaflow.engine.tokens import estimate_completion_tokens
from quotaflow.types import Usage

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_CONTEXT_CODES = {"context_length_exceeded", "string_above_max_length"}
_FILTER_CODES = {"content_filter", "content_policy_violation"}


def parse_duration(text: str | None) -> float | None:
    """Go-style durations of ``x-ratelimit-reset-*``: ``"6m0s"``, ``"1s"``, ``"12ms"`` → seconds."""
    if not text:
        return None
    return _parse_duration(text)


@functools.lru_cache(maxsize=4096)
def _parse_duration(text: str) -> float | None:
    # The same few reset strings come back on most answers: parse each once.
    total, pos = 0.0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(text):
        try:
            return float(text)
        except ValueError:
            return None
    return total


def _int(v: str | None) -> int | None:
    if v is None:
        return None
    if v.isdigit():
        return int(v)
    try:
        return int(float(v))
    except ValueError:
        return None


def _is_mapping(v: Any) -> TypeGuard[Mapping[str, Any]]:
    return type(v) is dict or isinstance(v, Mapping)  # (an ABC's isinstance is slow)


def usage_from_openai(u: Mapping[str, Any] | None) -> Usage | None:
    if not _is_mapping(u):
        return None
    pt = u.get("prompt_tokens") or 0
    ct = u.get("completion_tokens") or 0
    details = u.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if _is_mapping(details) else None
    if cached is None:
        cached = u.get("prompt_cache_hit_tokens") or 0  # DeepSeek
    cdetails = u.get("completion_tokens_details") or {}
    reasoning = cdetails.get("reasoning_tokens", 0) if _is_mapping(cdetails) else 0
    return Usage(int(pt), int(ct), int(cached or 0), int(reasoning or 0))


def _error_fields(body: bytes) -> tuple[dict[str, Any] | None, str, str | None, str | None]:
    try:
        obj = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        obj = None
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):
        code, etype = err.get("code"), err.get("type")
        return (
            obj,
            str(err.get("message") or ""),
            etype if isinstance(etype, str) else None,  # a provider's odd JSON must not crash
            None if code is None else str(code),
        )
    if isinstance(err, str):
        return obj, err, None, None
    return None, body[:300].decode("utf-8", "replace"), None, None


def classify_openai_error(status: int, headers: Headers, body: bytes) -> UpstreamFailure:
    obj, message, etype, code = _error_fields(body)
    retry = retry_after_seconds(headers)
    kind: ErrorKind
    lowered = message.lower()
    if status == 429:
        exhausted = "insufficient_quota" in (etype, code) or (
            "quota" in lowered and "exceeded your current quota" in lowered
        )
        kind = ErrorKind.QUOTA_EXHAUSTED if exhausted else ErrorKind.RATE_LIMITED
    elif status in (401, 403):
        kind = ErrorKind.AUTH
    elif status == 402:
        kind = ErrorKind.QUOTA_EXHAUSTED
    elif status == 404:
        kind = ErrorKind.NOT_FOUND
    elif status == 408:
        kind = ErrorKind.TIMEOUT
    elif status >= 500 or status == 409:
        kind = ErrorKind.SERVER_ERROR
    elif code in _CONTEXT_CODES or "context length" in lowered or "context_length" in lowered:
        kind = ErrorKind.CONTEXT_TOO_LONG
    elif code in _FILTER_CODES or etype in _FILTER_CODES:
        kind = ErrorKind.CONTENT_FILTERED
    else:
        kind = ErrorKind.BAD_REQUEST
    client_body = obj if obj is not None and isinstance(obj.get("error"), dict) else None
    return UpstreamFailure(
        kind, status, message or f"HTTP {status}", retry, client_body, code or etype
    )


class OpenAIStream:
    """Passes OpenAI chunks through, learning usage and text; swallows ``[DONE]``."""

    def __init__(self, include_usage: bool) -> None:
        self.state = StreamState()
        self._include_usage = include_usage

    def feed(self, event: SSEEvent) -> list[bytes]:
        data = event.data
        st = self.state
        if data == "[DONE]":
            st.done = True
            return []
        if not data:
            return []
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            st.error = UpstreamFailure(
                ErrorKind.MALFORMED, 200, "unreadable stream chunk from the provider"
            )
            return []
        if not isinstance(obj, dict):
            return []
        err = obj.get("error")
        if err is not None:
            code = str(err.get("code", "")) if isinstance(err, dict) else ""
            fail = classify_openai_error(
                int(code) if code.isdigit() else 500,
                {},
                orjson.dumps({"error": err}),
            )
            st.error = fail
            return []
        st.chunks += 1
        usage = obj.get("usage")
        if usage:
            st.usage = usage_from_openai(usage)
        choices = obj.get("choices")
        if choices:
            for ch in choices:
                delta = ch.get("delta") or {}
                piece = delta.get("content")
                if piece:
                    st.text.append(piece)
                for tc in delta.get("tool_calls") or ():
                    fn = tc.get("function") or {}
                    st.text.append((fn.get("name") or "") + (fn.get("arguments") or ""))
                if ch.get("finish_reason"):
                    st.finish_reason = ch["finish_reason"]
        elif usage and not self._include_usage:
            return []  # the usage-only chunk the client did not ask for
        if not self._include_usage and "usage" in obj:
            del obj["usage"]
            return [sse_frame(orjson.dumps(obj))]
        return [sse_frame(data.encode())]


class OpenAIAdapter:
    protocol: ClassVar[str] = "openai"

    def build_request(
        self, body: Mapping[str, Any], target: CallTarget, *, max_tokens: int | None, stream: bool
    ) -> UpstreamCall:
        out = dict(body)
        out["model"] = target.model
        if max_tokens is not None:
            # Every cap the client sent becomes the reserved one: an upstream honouring the
            # larger of two would bill past the reservation.
            if "max_completion_tokens" in out:
                out["max_completion_tokens"] = max_tokens
            if "max_tokens" in out or "max_completion_tokens" not in out:
                out["max_tokens"] = max_tokens
        if stream:
            out["stream"] = True
            if target.headers.get("x-quotaflow-no-stream-options") is None:
                opts = dict(out.get("stream_options") or {})
                opts["include_usage"] = True
                out["stream_options"] = opts
        else:
            out.pop("stream_options", None)
            if "stream" in out:
                out["stream"] = False
        headers = {
            "authorization": f"Bearer {target.secret}",
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
        }
        for k, v in target.headers.items():
            if not k.startswith("x-quotaflow-"):
                headers[k] = v
        return UpstreamCall(
            target.base_url + "/chat/completions", headers, orjson.dumps(out), stream
        )

    def parse_response(
        self, status: int, headers: Headers, body: bytes, model: str, created: int = 0
    ) -> ChatResult:
        obj = load_json_object(body)
        if "error" in obj and "choices" not in obj:
            raise MalformedResponse(
                f"the provider answered 2xx with an error: {str(obj['error'])[:200]}"
            )
        choices = obj.get("choices")
        if not isinstance(choices, list):
            raise MalformedResponse("the provider's answer has no choices")
        usage = usage_from_openai(obj.get("usage"))
        finish = (
            choices[0].get("finish_reason") if choices and isinstance(choices[0], dict) else None
        )
        if usage is None:
            text = ""
            for ch in choices:
                msg = ch.get("message") or {} if isinstance(ch, dict) else {}
                text += str(msg.get("content") or "") + str(msg.get("tool_calls") or "")
            usage = Usage(0, estimate_completion_tokens(text), estimated=True)
        if created and not obj.get("created"):
            obj["created"] = created
        return ChatResult(obj, usage, finish)

    def stream_translator(self, model: str, include_usage: bool, created: int = 0) -> OpenAIStream:
        # OpenAI-compatible providers stamp their own chunks; they pass through untouched.
        return OpenAIStream(include_usage)

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamFailure:
        return redirect_failure(status, headers) or classify_openai_error(status, headers, body)

    def rate_info(self, headers: Headers) -> RateInfo | None:
        if (
            "x-ratelimit-remaining-requests" not in headers
            and "x-ratelimit-remaining-tokens" not in headers
        ):
            return None
        get = headers.get
        return RateInfo(
            _int(get("x-ratelimit-limit-requests")),  # requests_limit
            _int(get("x-ratelimit-remaining-requests")),  # requests_remaining
            parse_duration(get("x-ratelimit-reset-requests")),  # requests_reset_s
            _int(get("x-ratelimit-limit-tokens")),  # tokens_limit
            _int(get("x-ratelimit-remaining-tokens")),  # tokens_remaining
            parse_duration(get("x-ratelimit-reset-tokens")),  # tokens_reset_s
        )
