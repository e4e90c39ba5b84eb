# Longer than 600 lines on purpose: one protocol's request, answer and stream translation, kept together.
"""The ``anthropic`` protocol: Anthropic Messages (``POST /v1/messages``) behind OpenAI chat.

Decisions, with the page they rest on:

* ``anthropic-version: 2023-06-01`` is pinned: under ``2026-10-21`` ``temperature`` and
  ``top_p`` are refused (PROVIDER_FORMATS §2). The deployment's own headers may override it.
* ``system`` and ``developer`` messages, wherever they stand, are joined with ``"\\n"`` into
  the top-level ``system``, as Anthropic's own OpenAI compatibility layer does
  (https://platform.claude.com/docs/en/api/openai-sdk).
* ``temperature`` is **capped** at 1, not halved: it is the same sampling temperature on
  both APIs, Anthropic only stops at 1 ("Values greater than 1 are capped at 1", same page).
* ``n > 1`` is unsupported (Anthropic answers one choice); ``logprobs``, penalties, ``seed``,
  ``logit_bias``, ``stream_options``, ``service_tier``, ``store``… are dropped, because any
  unknown top-level field is a 400 upstream. Whitespace-only stop sequences are dropped.
* ``response_format`` ``json_object``/``json_schema`` (object schemas, no client tools) is
  emulated with one forced tool named :data:`RESPONSE_FORMAT_TOOL`: its input comes back as
  the message ``content`` and ``finish_reason`` ``stop``. With client tools it is dropped.
* ``created`` in answers and chunks is the gateway's timestamp, passed in (adapters read
  no clock).
* What Messages cannot carry (``n > 1``, audio input, files other than PDF) raises
  :class:`~quotaflow.errors.UnsupportedByProtocol`: the gateway then tries a deployment
  of another protocol instead of failing the request.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

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
)
from quotaflow.adapters.translate import (
    DEFAULT_MAX_TOKENS,
    ChunkWriter,
    assistant_choice,
    completion_body,
    completion_cap,
    content_parts,
    copy_headers,
    file_data_of,
    function_tools,
    image_url_of,
    openai_error,
    parse_data_uri,
    refuse_n,
    stop_sequences,
    text_of,
    tool_arguments,
    tool_call,
)
from quotaflow.engine.tokens import estimate_completion_tokens
from quotaflow.errors import BadRequest, UnsupportedByProtocol
from quotaflow.types import Usage

ANTHROPIC_VERSION = "2023-06-01"
RESPONSE_FORMAT_TOOL = "quotaflow_response_format"

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# The HTTP status an error type stands for, to classify ``event: error`` mid-stream.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_CONTEXT_MARKERS = ("prompt is too long", "exceed context limit", "context window")


# ---------------------------------------------------------------------------- request


def _user_block(part: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = part.get("type")
    block: dict[str, Any]
    if kind == "text":
        text = str(part.get("text") or "")
        if not text:
            return None
        block = {"type": "text", "text": text}
    elif kind == "image_url":
        url = image_url_of(part)
        inline = parse_data_uri(url)
        source = (
            {"type": "base64", "media_type": inline[0], "data": inline[1]}
            if inline
            else {"type": "url", "url": url}
        )
        block = {"type": "image", "source": source}
    elif kind == "file":
        mime, data = file_data_of(part)
        if mime != "application/pdf":
            raise UnsupportedByProtocol(
                f"the anthropic protocol takes PDF files only, not {mime}", param="messages"
            )
        block = {"type": "document", "source": {"type": "base64", "media_type": mime, "data": data}}
    elif kind in ("input_audio", "audio"):
        raise UnsupportedByProtocol(
            "input_audio (audio input) is not supported by the anthropic protocol",
            param="messages",
        )
    else:
        raise BadRequest(
            f"content parts of type {kind!r} are not supported by the anthropic protocol",
            param="messages",
        )
    if isinstance(part.get("cache_control"), Mapping):
        block["cache_control"] = dict(part["cache_control"])
    return block


def _assistant_blocks(msg: Mapping[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in content_parts(msg.get("content")):
        text = part.get("text") if part.get("type") == "text" else part.get("refusal")
        if not isinstance(text, str):
            raise BadRequest("assistant messages may hold text parts only", param="messages")
        if text:
            blocks.append({"type": "text", "text": text})
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        name = str(fn.get("name") or "")
        if not call.get("id") or not name:
            raise BadRequest(
                "every assistant tool call needs an id and a function name", param="messages"
            )
        blocks.append(
            {
                "type": "tool_use",
                "id": call["id"],
                "name": name,
                "input": tool_arguments(fn.get("arguments"), name),
            }
        )
    return blocks


def _tool_result(msg: Mapping[str, Any]) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest("a tool message needs the tool_call_id it answers", param="messages")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        blocks = [b for b in (_user_block(p) for p in content_parts(content)) if b]
        if blocks:
            block["content"] = blocks
    return block


def _messages(raw: Any) -> tuple[str, list[dict[str, Any]]]:
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise BadRequest("messages must be a non-empty list", param="messages")
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for msg in raw:
        role = msg.get("role") if isinstance(msg, Mapping) else None
        if role in ("system", "developer"):
            system.append(text_of(msg.get("content")))
            continue
        if role == "user":
            blocks = [b for b in (_user_block(p) for p in content_parts(msg.get("content"))) if b]
        elif role == "assistant":
            blocks = _assistant_blocks(msg)
        elif role == "tool":
            blocks = [_tool_result(msg)]
        else:
            raise BadRequest(f"messages of role {role!r} are not supported", param="messages")
        if not blocks:
            continue  # Anthropic refuses empty messages
        arole = "assistant" if role == "assistant" else "user"
        if out and out[-1]["role"] == arole:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": arole, "content": blocks})
    for m in out:  # tool_result blocks must open their user message
        m["content"].sort(key=lambda b: b["type"] != "tool_result")
    return "\n".join(s for s in system if s), out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None:
        out = None
    elif choice == "none":
        out = {"type": "none"}
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        out = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise BadRequest(f"unsupported tool_choice {choice!r}", param="tool_choice")
    if parallel is False and (out is None or out["type"] != "none"):
        out = {**(out or {"type": "auto"}), "disable_parallel_tool_use": True}
    return out


def _response_format_schema(fmt: Any) -> dict[str, Any] | None:
    if not isinstance(fmt, Mapping):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "object"}
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if isinstance(schema, Mapping) and schema.get("type", "object") == "object":
            return dict(schema)
        return {"type": "object"} if schema is None else None
    return None


def _apply_tools(out: dict[str, Any], body: Mapping[str, Any]) -> None:
    fns = function_tools(body)
    if fns:
        out["tools"] = [
            {
                "name": fn["name"],
                **({"description": fn["description"]} if fn.get("description") else {}),
                "input_schema": {"type": "object", **(fn.get("parameters") or {"properties": {}})},
            }
            for fn in fns
        ]
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
        return
    schema = _response_format_schema(body.get("response_format"))
    if schema is not None:
        out["tools"] = [
            {
                "name": RESPONSE_FORMAT_TOOL,
                "description": "Give the final answer as this tool's input: a JSON value matching its schema.",
                "input_schema": schema,
            }
        ]
        out["tool_choice"] = {"type": "tool", "name": RESPONSE_FORMAT_TOOL}


def to_anthropic_request(
    body: Mapping[str, Any], model: str, max_tokens: int | None, stream: bool
) -> dict[str, Any]:
    """The Messages API body for an OpenAI chat-completions ``body``."""
    refuse_n(body, "anthropic")
    system, messages = _messages(body.get("messages"))
    out: dict[str, Any] = {
        "model": model,
        "max_tokens": completion_cap(body, max_tokens) or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if system:
        out["system"] = system
    if isinstance(body.get("temperature"), int | float):
        out["temperature"] = min(max(float(body["temperature"]), 0.0), 1.0)
    if isinstance(body.get("top_p"), int | float):
        out["top_p"] = body["top_p"]
    if isinstance(body.get("top_k"), int):
        out["top_k"] = body["top_k"]
    stops = [s for s in stop_sequences(body.get("stop")) if s.strip()]
    if stops:
        out["stop_sequences"] = stops
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    _apply_tools(out, body)
    if stream:
        out["stream"] = True
    return out


# ---------------------------------------------------------------------------- response


def usage_from_anthropic(u: Any) -> Usage | None:
    """Anthropic usage → :class:`Usage`: the prompt is input + cache writes + cache reads."""
    if not isinstance(u, Mapping):
        return None
    cache_read = int(u.get("cache_read_input_tokens") or 0)
    prompt = (
        int(u.get("input_tokens") or 0)
        + int(u.get("cache_creation_input_tokens") or 0)
        + cache_read
    )
    return Usage(prompt, int(u.get("output_tokens") or 0), cache_read)


def finish_reason(stop_reason: Any, has_tool_calls: bool) -> str:
    """OpenAI ``finish_reason`` for an Anthropic ``stop_reason`` (unknown ones read as ``stop``)."""
    if stop_reason == "tool_use" and not has_tool_calls:
        return "stop"  # only the response-format tool was used
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def from_anthropic_response(obj: Mapping[str, Any], model: str, created: int = 0) -> ChatResult:
    """A Messages answer as an OpenAI ``chat.completion``."""
    content = obj.get("content")
    if not isinstance(content, list):
        raise MalformedResponse("the provider's answer has no content list")
    text, calls = "", []
    for block in content:
        if not isinstance(block, Mapping):
            continue
        if block.get("type") == "text":
            text += str(block.get("text") or "")
        elif block.get("type") == "tool_use":
            args = orjson.dumps(block.get("input") or {}).decode()
            if block.get("name") == RESPONSE_FORMAT_TOOL:
                text += args
            else:
                calls.append(tool_call(str(block.get("id")), str(block.get("name")), args))
    finish = finish_reason(obj.get("stop_reason"), bool(calls))
    usage = usage_from_anthropic(obj.get("usage"))
    if usage is None:
        usage = Usage(0, estimate_completion_tokens(text + str(calls)), estimated=True)
    body = completion_body(
        id=f"chatcmpl-{obj.get('id', '')}",
        model=model or str(obj.get("model") or ""),
        choices=[assistant_choice(0, text, calls, finish)],
        usage=usage,
        created=created,
    )
    return ChatResult(body, usage, finish)


# ---------------------------------------------------------------------------- errors


def _error_fields(body: bytes) -> tuple[str, str | None]:
    try:
        obj = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        obj = None
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):
        etype = err.get("type")
        return str(err.get("message") or ""), etype if isinstance(etype, str) else None
    return body[:300].decode("utf-8", "replace").strip(), None


def classify_anthropic_error(status: int, headers: Headers, body: bytes) -> UpstreamFailure:
    """A non-2xx Messages answer (or a mid-stream ``error`` event) → :class:`UpstreamFailure`."""
    message, etype = _error_fields(body)
    lowered = message.lower()
    kind: ErrorKind
    if status == 429:
        kind = ErrorKind.RATE_LIMITED
    elif status in (401, 403):
        kind = ErrorKind.AUTH
    elif status == 402 or etype == "billing_error" or "credit balance" in lowered:
        kind = ErrorKind.QUOTA_EXHAUSTED  # credit exhaustion arrives as a 400
    elif status == 404:
        kind = ErrorKind.NOT_FOUND
    elif status in (408, 504):
        kind = ErrorKind.TIMEOUT
    elif status >= 500 or status == 409:
        kind = ErrorKind.SERVER_ERROR  # 529 overloaded is provider-wide, not this key's quota
    elif any(m in lowered for m in _CONTEXT_MARKERS):
        kind = ErrorKind.CONTEXT_TOO_LONG
    else:
        kind = ErrorKind.BAD_REQUEST
    message = message or f"HTTP {status}"
    return UpstreamFailure(
        kind,
        status,
        message,
        retry_after_seconds(headers),
        openai_error(kind, message, etype),
        etype,
    )


# ---------------------------------------------------------------------------- stream


class AnthropicStream:
    """Anthropic's named SSE events → OpenAI ``chat.completion.chunk`` frames."""

    def __init__(self, model: str, include_usage: bool, created: int = 0) -> None:
        self.state = StreamState()
        self._out = ChunkWriter(model, include_usage, created)
        self._blocks: dict[int, int | str] = {}  # block index → tool-call index, "rf" or "text"
        self._tools = 0
        self._usage: dict[str, Any] = {}

    def feed(self, event: SSEEvent) -> list[bytes]:
        if not event.data:
            return []
        try:
            obj = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            self.state.error = UpstreamFailure(
                ErrorKind.MALFORMED, 200, "unreadable stream event from the provider"
            )
            return []
        if not isinstance(obj, dict):
            return []
        kind = obj.get("type") or event.event
        handler = getattr(self, f"_on_{kind}", None)
        if handler is None:
            return []  # ping, content_block_stop, and event types added later
        self.state.chunks += 1
        frames: list[bytes] = handler(obj)
        return frames

    def _set_usage(self, u: Any) -> None:
        if isinstance(u, Mapping):
            self._usage.update({k: v for k, v in u.items() if isinstance(v, int)})  # cumulative
            self.state.usage = usage_from_anthropic(self._usage)

    def _on_message_start(self, obj: dict[str, Any]) -> list[bytes]:
        msg = obj.get("message") or {}
        self._out.id = f"chatcmpl-{msg.get('id', '')}"
        self._set_usage(msg.get("usage"))
        return [self._out.delta({"role": "assistant", "content": ""})]

    def _on_content_block_start(self, obj: dict[str, Any]) -> list[bytes]:
        block = obj.get("content_block") or {}
        index = int(obj.get("index") or 0)
        if block.get("type") == "text":
            self._blocks[index] = "text"
            return self._text(str(block.get("text") or ""))
        if block.get("type") != "tool_use":
            return []  # thinking and server-tool blocks are not shown to OpenAI clients
        name = str(block.get("name") or "")
        if name == RESPONSE_FORMAT_TOOL:
            self._blocks[index] = "rf"
            return []
        self._blocks[index] = n = self._tools
        self._tools += 1
        self.state.text.append(name)
        call = {
            "index": n,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        frames = [self._out.delta({"tool_calls": [call]})]
        if block.get("input"):
            frames += self._arguments(index, orjson.dumps(block["input"]).decode())
        return frames

    def _on_content_block_delta(self, obj: dict[str, Any]) -> list[bytes]:
        delta = obj.get("delta") or {}
        if delta.get("type") == "text_delta":
            return self._text(str(delta.get("text") or ""))
        if delta.get("type") == "input_json_delta":
            return self._arguments(int(obj.get("index") or 0), str(delta.get("partial_json") or ""))
        return []

    def _text(self, text: str) -> list[bytes]:
        if not text:
            return []
        self.state.text.append(text)
        return [self._out.delta({"content": text})]

    def _arguments(self, index: int, piece: str) -> list[bytes]:
        target = self._blocks.get(index)
        if not piece or target is None or target == "text":
            return []
        if target == "rf":
            return self._text(piece)
        self.state.text.append(piece)
        return [
            self._out.delta({"tool_calls": [{"index": target, "function": {"arguments": piece}}]})
        ]

    def _on_message_delta(self, obj: dict[str, Any]) -> list[bytes]:
        self._set_usage(obj.get("usage"))
        stop = (obj.get("delta") or {}).get("stop_reason")
        if stop is None:
            return []
        self.state.finish_reason = finish_reason(stop, self._tools > 0)
        return [self._out.finish(self.state.finish_reason)]

    def _on_message_stop(self, obj: dict[str, Any]) -> list[bytes]:
        self.state.done = True
        return self._out.usage(self.state.usage) if self.state.usage else []

    def _on_error(self, obj: dict[str, Any]) -> list[bytes]:
        err = obj["error"] if isinstance(obj.get("error"), dict) else {}
        status = _ERROR_STATUS.get(str(err.get("type")), 500)
        self.state.error = classify_anthropic_error(
            status, {}, orjson.dumps({"type": "error", "error": err})
        )
        return []


# ---------------------------------------------------------------------------- rate limits


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def seconds_until(reset: str | None, now: datetime | None) -> float | None:
    """Seconds from ``now`` (the response's ``date``) to an RFC 3339 reset; None if unknown."""
    if not reset or now is None:
        return None
    try:
        when = datetime.fromisoformat(reset)
    except ValueError:
        return None
    if when.tzinfo is None or now.tzinfo is None:
        return None
    return max((when - now).total_seconds(), 0.0)


def anthropic_rate_info(headers: Headers) -> RateInfo | None:
    """``anthropic-ratelimit-*`` → :class:`RateInfo`; resets are measured against ``date``."""
    p = "anthropic-ratelimit-"
    tokens = "tokens" if f"{p}tokens-remaining" in headers else "input-tokens"
    if f"{p}requests-remaining" not in headers and f"{p}{tokens}-remaining" not in headers:
        return None
    now = _http_date(headers.get("date"))
    return RateInfo(
        requests_limit=_int(headers.get(f"{p}requests-limit")),
        requests_remaining=_int(headers.get(f"{p}requests-remaining")),
        requests_reset_s=seconds_until(headers.get(f"{p}requests-reset"), now),
        tokens_limit=_int(headers.get(f"{p}{tokens}-limit")),
        tokens_remaining=_int(headers.get(f"{p}{tokens}-remaining")),
        tokens_reset_s=seconds_until(headers.get(f"{p}{tokens}-reset"), now),
    )


# ---------------------------------------------------------------------------- adapter


class AnthropicAdapter:
    """OpenAI chat completions ↔ Anthropic Messages; see the module docstring for the choices."""

    protocol: ClassVar[str] = "anthropic"

    def build_request(
        self, body: Mapping[str, Any], target: CallTarget, *, max_tokens: int | None, stream: bool
    ) -> UpstreamCall:
        out = to_anthropic_request(body, target.model, max_tokens, stream)
        headers = {
            "x-api-key": target.secret,
            "anthropic-version": ANTHROPIC_VERSION,
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
        }
        copy_headers(headers, target.headers)
        url = target.base_url.rstrip("/") + "/v1/messages"
        return UpstreamCall(url, headers, orjson.dumps(out), stream)

    def parse_response(
        self, status: int, headers: Headers, body: bytes, model: str, created: int = 0
    ) -> ChatResult:
        obj = load_json_object(body)
        if obj.get("type") == "error":
            raise MalformedResponse(
                f"the provider answered 2xx with an error: {str(obj.get('error'))[:200]}"
            )
        return from_anthropic_response(obj, model, created)

    def stream_translator(
        self, model: str, include_usage: bool, created: int = 0
    ) -> AnthropicStream:
        return AnthropicStream(model, include_usage, created)

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamFailure:
        return redirect_failure(status, headers) or classify_anthropic_error(status, headers, body)

    def rate_info(self, headers: Headers) -> RateInfo | None:
        return anthropic_rate_info(headers)


ADAPTER = AnthropicAdapter()
