"""Anthropic Messages: ``POST /v1/messages``.

Byte-faithful to the real API where a client can tell (PROVIDER_FORMATS.md §2): the
``anthropic-version`` check (``2023-06-01`` and ``2026-10-21``, the latter rejecting
``temperature``/``top_p``/``top_k``), "Extra inputs are not permitted" for unknown fields,
the ``message`` body, the named SSE events, ``{"type": "error", …, "request_id"}`` bodies,
``anthropic-ratelimit-*`` headers with RFC 3339 resets, and ``request-id``.
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

import orjson
from aiohttp import web

from quotaflow.fake_provider.protocol import (
    ApiError,
    ChatRequest,
    Handler,
    StreamPlan,
    retry_after_header,
)
from quotaflow.fake_provider.ratelimit import Refusal
from quotaflow.fake_provider.reply import Reply, last_turn_is_user
from quotaflow.fake_provider.sse import event_frame
from quotaflow.fake_provider.state import FakeProviderState
from quotaflow.fake_provider.tokens import PromptCounter

VERSIONS = ("2023-06-01", "2026-10-21")
SAMPLING_PARAMS = frozenset(("temperature", "top_p", "top_k"))
PARAMS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "temperature",
        "top_p",
        "top_k",
        "cache_control",
        "container",
        "diagnostics",
        "inference_geo",
        "output_config",
        "speed",
        "user_profile_id",
        "workspace_id",
        "mcp_servers",
        "context_management",
    }
)
UNLIMITED_RPM = 1_000_000
UNLIMITED_TPM = 1_000_000_000
STOP_REASON = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
CREDIT_MESSAGE = (
    "Your credit balance is too low to access the Anthropic API. "
    "Please go to Plans & Billing to upgrade or purchase credits."
)
SYSTEM_ROLE_MESSAGE = (
    'messages: Unexpected role "system". The Messages API accepts a top-level `system` '
    'parameter, not "system" as an input message role.'
)
# Models that take ``{"role": "system"}`` messages inside ``messages`` (mid-conversation
# system messages), and the API's placement rules for them.
MID_SYSTEM_MODELS = ("claude-opus-4-8",)
MID_SYSTEM_FIRST = "messages.0.role: a system message cannot be the first message"
MID_SYSTEM_AFTER = "messages.{i}: a system message must follow a user message or a server tool use"
MID_SYSTEM_BEFORE = (
    "messages.{i}: a system message must be last or followed by an assistant message"
)
MID_SYSTEM_TEXT = "messages.{i}.content: a system message supports text blocks only"
RATE_LIMIT_MESSAGE = (
    "This request would exceed the rate limit for your organization of {limit} {unit} per "
    "minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see "
    "the response headers for current usage. Please reduce the prompt length or the maximum "
    "tokens requested, or try again later. You may also contact sales at "
    "https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase."
)
# status → (error.type, message)
STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your organization has a billing issue. Please check Plans & Billing."),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", RATE_LIMIT_MESSAGE.format(limit=50, unit="requests")),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}
CONTEXT_WINDOW = 200_000
PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def rfc3339(epoch_s: float) -> str:
    """``2025-08-21T12:40:59Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


class _Invalid(Exception):
    """A 400 ``invalid_request_error`` found while checking the body; ``args[0]`` is the message."""


def _json_request(data: dict[str, Any]) -> dict[str, Any]:
    """``json_mode`` / ``json_schema`` from ``output_config.format`` (structured outputs)."""
    config = data.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return {}
    return {"json_mode": True, "json_schema": fmt.get("schema")}


def _role(message: Any) -> Any:
    return message.get("role") if isinstance(message, dict) else None


def _check_mid_system(model: Any, messages: list[Any], i: int) -> None:
    """The Messages API's rules for a ``system`` message inside ``messages``: only on the
    models that take one, never first, right after a user message, last or before an
    assistant message, text blocks only (two system messages in a row break the second rule)."""
    if not str(model).startswith(MID_SYSTEM_MODELS):
        raise _Invalid(SYSTEM_ROLE_MESSAGE)
    if i == 0:
        raise _Invalid(MID_SYSTEM_FIRST)
    before = messages[i - 1]
    server_tool = (
        _role(before) == "assistant"
        and isinstance(before.get("content"), list)
        and bool(before["content"])
        and isinstance(before["content"][-1], dict)
        and before["content"][-1].get("type") == "server_tool_use"
    )
    if _role(before) != "user" and not server_tool:
        raise _Invalid(MID_SYSTEM_AFTER.format(i=i))
    if i + 1 < len(messages) and _role(messages[i + 1]) != "assistant":
        raise _Invalid(MID_SYSTEM_BEFORE.format(i=i))
    content = messages[i].get("content")
    blocks = [content] if isinstance(content, str) else content
    if not isinstance(blocks, list) or not all(
        isinstance(b, str) or (isinstance(b, dict) and b.get("type") == "text") for b in blocks
    ):
        raise _Invalid(MID_SYSTEM_TEXT.format(i=i))


def _block_text(block: Any, pieces: list[str]) -> int:
    """Add a content block's text to ``pieces``; return 1 for an image, else 0."""
    if not isinstance(block, dict):
        return 0
    kind = block.get("type")
    if kind == "text":
        pieces.append(str(block.get("text", "")))
    elif kind == "image":
        return 1
    elif kind == "tool_use":
        pieces.append(str(block.get("name", "")))
        pieces.append(orjson.dumps(block.get("input", {})).decode())
    elif kind == "tool_result":
        content = block.get("content")
        if isinstance(content, str):
            pieces.append(content)
        elif isinstance(content, list):
            return sum(_block_text(b, pieces) for b in content)
    elif kind == "thinking":
        pieces.append(str(block.get("thinking", "")))
    return 0


def _plain_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def _count_message(content: Any, counter: PromptCounter) -> None:
    if isinstance(content, str):
        counter.add_message((content,))
        return
    pieces: list[str] = []
    images = sum(_block_text(b, pieces) for b in content) if isinstance(content, list) else 0
    counter.add_message(pieces, images)


def _tool_name(data: dict[str, Any]) -> str | None:
    tools = data.get("tools")
    choice = data.get("tool_choice")
    if not isinstance(tools, list) or not tools:
        return None
    if isinstance(choice, dict):
        if choice.get("type") == "none":
            return None
        if choice.get("type") == "tool" and isinstance(choice.get("name"), str):
            return str(choice["name"])
    first = tools[0]
    return str(first.get("name")) if isinstance(first, dict) else None


def _forced_tool(data: dict[str, Any]) -> tuple[str, Any] | None:
    """The tool ``tool_choice`` (``any`` or ``tool``) requires, with its input schema."""
    choice = data.get("tool_choice")
    tools = [t for t in data.get("tools") or () if isinstance(t, dict)]
    if not tools or not isinstance(choice, dict) or choice.get("type") not in ("any", "tool"):
        return None
    name = _tool_name(data)
    tool = next((t for t in tools if t.get("name") == name), tools[0])
    return str(tool.get("name")), tool.get("input_schema")


def _check_fields(data: dict[str, Any], version: str) -> None:
    for name in data:
        if name not in PARAMS or (version != "2023-06-01" and name in SAMPLING_PARAMS):
            raise _Invalid(f"{name}: Extra inputs are not permitted")
    for name in ("model", "messages", "max_tokens"):
        if name not in data:
            raise _Invalid(f"{name}: Field required")
    max_tokens = data["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        raise _Invalid("max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        raise _Invalid("max_tokens: Input should be greater than or equal to 1")
    if not isinstance(data["model"], str) or not data["model"]:
        raise _Invalid("model: Input should be a valid string")


class AnthropicProtocol:
    """Anthropic Messages on ``/v1/messages``."""

    name: ClassVar[str] = "anthropic"
    stream_content_type: ClassVar[str] = "text/event-stream; charset=utf-8"

    def __init__(self, state: FakeProviderState) -> None:
        self.state = state

    def routes(self, chat: Handler) -> list[web.RouteDef]:
        return [web.post("/v1/messages", chat)]

    def extract_key(self, request: web.Request) -> str | None:
        # When both are sent the API uses x-api-key.
        key = request.headers.get("x-api-key")
        if key:
            return key
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip() or None
        return None

    # -- requests ---------------------------------------------------------------------

    def parse(self, request: web.Request, body: bytes, key: str) -> ChatRequest:
        version = request.headers.get("anthropic-version")
        if version is None:
            raise self._error(400, "invalid_request_error", "anthropic-version: header is required")
        if version not in VERSIONS:
            raise self._error(
                400,
                "invalid_request_error",
                f'anthropic-version: "{version}" is not a valid version',
            )
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise self._error(
                400,
                "invalid_request_error",
                "There was an error parsing the body of your request. Please ensure the body is valid JSON.",
            ) from None
        if not isinstance(data, dict):
            raise self._error(400, "invalid_request_error", "Input should be a valid dictionary")
        try:
            _check_fields(data, version)
            return self._to_request(data, key)
        except _Invalid as err:
            raise self._error(400, "invalid_request_error", str(err)) from None

    def _to_request(self, data: dict[str, Any], key: str) -> ChatRequest:
        messages = data["messages"]
        if not isinstance(messages, list) or not messages:
            raise _Invalid("messages: at least one message is required")
        counter = PromptCounter()
        system = data.get("system")
        if system is not None:
            _count_message(system, counter)
        last_user: str | None = None
        for i, msg in enumerate(messages):
            role = msg.get("role") if isinstance(msg, dict) else None
            if role == "system":
                _check_mid_system(data["model"], messages, i)
            elif role not in ("user", "assistant"):
                raise _Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
            content = msg.get("content")
            if not isinstance(content, (str, list)):
                raise _Invalid(f"messages.{i}.content: Field required")
            _count_message(content, counter)
            if role == "user":
                last_user = _plain_text(content)
        return ChatRequest(
            key=key,
            model=data["model"],
            stream=data.get("stream") is True,
            max_tokens=data["max_tokens"],
            prompt_tokens=counter.tokens,
            last_user_text=last_user,
            last_is_user=last_turn_is_user(messages),
            tool_name=_tool_name(data),
            **_json_request(data),
            forced_tool=_forced_tool(data),
        )

    # -- errors -----------------------------------------------------------------------

    def _error(
        self, status: int, type_: str, message: str, headers: dict[str, str] | None = None
    ) -> ApiError:
        rid = headers["request-id"] if headers else self.state.ids.anthropic_request()
        body = {"type": "error", "error": {"type": type_, "message": message}, "request_id": rid}
        return ApiError(status, body, headers or {"request-id": rid})

    def invalid_request(self, message: str) -> ApiError:
        return self._error(400, "invalid_request_error", message)

    def missing_key_error(self) -> ApiError:
        return self._error(401, "authentication_error", "x-api-key header is required")

    def invalid_key_error(self, key: str) -> ApiError:
        return self._error(401, "authentication_error", "invalid x-api-key")

    def quota_error(self, req: ChatRequest) -> ApiError:
        return self._error(400, "invalid_request_error", CREDIT_MESSAGE, self.headers(req))

    def rate_limit_error(self, req: ChatRequest, refusal: Refusal) -> ApiError:
        unit = "requests" if refusal.kind == "requests" else "input tokens"
        headers = self.headers(req)
        headers["retry-after"] = str(max(1, math.ceil(refusal.retry_after_s)))
        message = RATE_LIMIT_MESSAGE.format(limit=refusal.limit, unit=unit)
        return self._error(429, "rate_limit_error", message, headers)

    def status_error(self, req: ChatRequest, status: int, retry_after: float | None) -> ApiError:
        headers = self.headers(req)
        if retry_after is None and status == 429:
            retry_after = 1.0
        if retry_after is not None:
            headers["retry-after"] = retry_after_header(retry_after)
        fallback = ("api_error" if status >= 500 else "invalid_request_error", f"HTTP {status}")
        type_, message = STATUS_ERRORS.get(status, fallback)
        return self._error(status, type_, message, headers)

    def context_length_error(self, req: ChatRequest) -> ApiError:
        tokens = max(req.prompt_tokens, CONTEXT_WINDOW + 1)
        message = f"prompt is too long: {tokens} tokens > {CONTEXT_WINDOW} maximum"
        return self._error(400, "invalid_request_error", message, self.headers(req))

    def content_filter(self, req: ChatRequest) -> ApiError | tuple[bytes, StreamPlan]:
        # A refusal is a normal 200: no content, ``stop_reason: refusal``.
        body = orjson.dumps(self._message(req, [], "refusal", 1))
        start = {"type": "message_start", "message": self._message(req, [], None, 1)}
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": "refusal", "stop_sequence": None},
            "usage": {"output_tokens": 1},
        }
        plan = StreamPlan(
            head=[event_frame(b"message_start", start)],
            tail=[
                event_frame(b"message_delta", delta),
                event_frame(b"message_stop", {"type": "message_stop"}),
            ],
        )
        return body, plan

    # -- responses --------------------------------------------------------------------

    def headers(self, req: ChatRequest) -> dict[str, str]:
        state = self.state
        now = state.monotonic()
        w = state.limiter.window(req.key, now)
        reset = rfc3339(state.wall_clock() + w.reset_in(now))
        rpm = state.config.rpm or UNLIMITED_RPM
        tpm = state.config.tpm or UNLIMITED_TPM
        # The real tokens limit is input + output combined (e.g. 80000 + 16000 = 96000).
        otpm = tpm // 6
        itpm = tpm - otpm
        return {
            "request-id": state.ids.anthropic_request(),
            "anthropic-ratelimit-requests-limit": str(rpm),
            "anthropic-ratelimit-requests-remaining": str(max(0, rpm - w.requests)),
            "anthropic-ratelimit-requests-reset": reset,
            "anthropic-ratelimit-tokens-limit": str(tpm),
            "anthropic-ratelimit-tokens-remaining": str(max(0, tpm - w.tokens)),
            "anthropic-ratelimit-tokens-reset": reset,
            "anthropic-ratelimit-input-tokens-limit": str(itpm),
            "anthropic-ratelimit-input-tokens-remaining": str(max(0, itpm - w.input_tokens)),
            "anthropic-ratelimit-input-tokens-reset": reset,
            "anthropic-ratelimit-output-tokens-limit": str(otpm),
            "anthropic-ratelimit-output-tokens-remaining": str(max(0, otpm - w.output_tokens)),
            "anthropic-ratelimit-output-tokens-reset": reset,
        }

    def _message(
        self, req: ChatRequest, content: list[Any], stop: str | None, output_tokens: int
    ) -> dict[str, Any]:
        return {
            "id": self.state.ids.anthropic_message(),
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": req.prompt_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": output_tokens,
                "service_tier": "standard",
            },
        }

    def render(self, req: ChatRequest, reply: Reply) -> bytes:
        call = reply.tool_call
        if call is None:
            content: list[Any] = [{"type": "text", "text": reply.text}]
        else:
            content = [
                {
                    "type": "tool_use",
                    "id": self.state.ids.anthropic_tool_use(),
                    "name": call.name,
                    "input": call.args,
                }
            ]
        stop = STOP_REASON[reply.finish]
        return orjson.dumps(self._message(req, content, stop, reply.completion_tokens))

    def stream_plan(self, req: ChatRequest, reply: Reply) -> StreamPlan:
        start = event_frame(
            b"message_start", {"type": "message_start", "message": self._message(req, [], None, 1)}
        )
        call = reply.tool_call
        if call is None:
            block: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in reply.pieces]
            head = [start, _block_start(block), PING]
        else:
            block = {
                "type": "tool_use",
                "id": self.state.ids.anthropic_tool_use(),
                "name": call.name,
                "input": {},
            }
            deltas = [
                {"type": "input_json_delta", "partial_json": p} for p in call.argument_pieces()
            ]
            first = {"type": "input_json_delta", "partial_json": ""}
            head = [start, _block_start(block), PING, _block_delta(first)]
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": STOP_REASON[reply.finish], "stop_sequence": None},
            "usage": {"output_tokens": reply.completion_tokens},
        }
        tail = [
            event_frame(b"content_block_stop", {"type": "content_block_stop", "index": 0}),
            event_frame(b"message_delta", delta),
            event_frame(b"message_stop", {"type": "message_stop"}),
        ]
        return StreamPlan(head=head, content=[_block_delta(d) for d in deltas], tail=tail)

    def malformed(self, req: ChatRequest) -> bytes:
        if req.stream:
            return b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_01malformed","type":"mess\n\n'
        return b'{"id":"msg_01malformed","type":"message","role":"assistant","content":[{"type":"text","text":"alp'


def _block_start(block: dict[str, Any]) -> bytes:
    return event_frame(
        b"content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    )


def _block_delta(delta: dict[str, Any]) -> bytes:
    return event_frame(
        b"content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
    )
