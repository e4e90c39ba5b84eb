"""OpenAI chat completions: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Byte-faithful to the real API where a client can tell (PROVIDER_FORMATS.md §1): the
``chat.completion`` body and ``chat.completion.chunk`` stream with ``[DONE]``, the
``stream_options.include_usage`` contract, ``{"error": {message, type, param, code}}``
bodies, ``x-ratelimit-*`` headers with Go-style durations, and ``x-request-id``.
"""

from __future__ import annotations

import math
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
from aiohttp import web

from quotaflow.fake_provider.protocol import (
    JSON_TYPE,
    ApiError,
    ChatRequest,
    Handler,
    StreamPlan,
    retry_after_header,
)
from quotaflow.fake_provider.ratelimit import Refusal
from quotaflow.fake_provider.reply import Reply, last_turn_is_user
from quotaflow.fake_provider.sse import data_frame
from quotaflow.fake_provider.state import FakeProviderState
from quotaflow.fake_provider.tokens import PromptCounter

PARAMS = frozenset(
    {
        "messages",
        "model",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "moderation",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
ROLES = ("system", "assistant", "user", "function", "tool", "developer")
MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o4-mini")
# Limits shown in the headers when no rpm/tpm is configured: large, so a gateway reading
# them never throttles itself against an unlimited fake.
UNLIMITED_RPM = 1_000_000
UNLIMITED_TPM = 1_000_000_000
FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}
CONTEXT_WINDOW = 128_000
CONTEXT_MESSAGE = (
    "This model's maximum context length is {window} tokens. However, your messages "
    "resulted in {tokens} tokens. Please reduce the length of the messages."
)
# Azure OpenAI's prompt filter (the OpenAI-compatible form of a content-filter refusal).
FILTER_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management "
    "policy. Please modify your prompt and retry. To learn more about our content filtering "
    "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)
ZERO_PROMPT_DETAILS = {"cached_tokens": 0, "audio_tokens": 0}
ZERO_COMPLETION_DETAILS = {
    "reasoning_tokens": 0,
    "audio_tokens": 0,
    "accepted_prediction_tokens": 0,
    "rejected_prediction_tokens": 0,
}
QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)
MISSING_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field "
    "(with blank username) if you're accessing the API from your browser and are prompted for "
    "a username and password. You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)
BAD_JSON_MESSAGE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
    "contact us through our help center at help.openai.com.)"
)
# status → (type, code, message); "{model}" is filled in.
STATUS_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    403: (
        "request_forbidden",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    502: ("server_error", None, "Bad gateway."),
    503: (
        "server_error",
        "server_is_overloaded",
        "The engine is currently overloaded, please try again later.",
    ),
}


def go_duration(seconds: float) -> str:
    """A duration as Go's ``time.Duration`` prints it, at millisecond precision: ``12ms``, ``1.5s``, ``6m0s``."""
    ms = round(seconds * 1000)
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def openai_error(
    status: int,
    message: str,
    type_: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> ApiError:
    """An OpenAI-format error response."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return ApiError(status, body, headers)


def _invalid(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    return openai_error(400, message, "invalid_request_error", param=param, code=code)


def _message_text(msg: dict[str, Any], counter: PromptCounter) -> str:
    """Count one message; return its plain text (for ECHO / CALL_TOOL)."""
    content = msg.get("content")
    pieces: list[str] = []
    images = 0
    if isinstance(content, str):
        pieces.append(content)
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                pieces.append(part["text"])
            elif part.get("type") == "image_url":
                images += 1
    text = "".join(pieces)
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            pieces.extend(str(fn.get(k) or "") for k in ("name", "arguments"))
    counter.add_message(pieces, images)
    return text


def _json_request(data: dict[str, Any]) -> dict[str, Any]:
    """``json_mode`` / ``json_schema`` from ``response_format``."""
    fmt = data.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return {"json_mode": kind in ("json_object", "json_schema"), "json_schema": schema}


def _max_tokens(body: dict[str, Any]) -> int | None:
    result: int | None = None
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise _invalid(
                f"Invalid type for '{name}': expected an integer, but got {type(value).__name__} instead.",
                param=name,
                code="invalid_type",
            )
        if value < 1:
            raise _invalid(
                f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got {value} instead.",
                param=name,
                code="integer_below_min_value",
            )
        result = value  # max_completion_tokens (checked last) supersedes max_tokens
    return result


def _tool_name(body: dict[str, Any]) -> str | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools or choice == "none":
        return None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return str(choice["function"].get("name"))
    first = tools[0]
    fn = first.get("function") if isinstance(first, dict) else None
    return str(fn.get("name")) if isinstance(fn, dict) else None


def _forced_tool(body: dict[str, Any]) -> tuple[str, Any] | None:
    """The tool ``tool_choice`` requires (``required``: the first), with its schema."""
    tools = [t.get("function") for t in body.get("tools") or () if isinstance(t, dict)]
    fns = [f for f in tools if isinstance(f, dict)]
    choice = body.get("tool_choice")
    if not fns or not (choice == "required" or isinstance(choice, dict)):
        return None
    name = _tool_name(body)
    fn = next((f for f in fns if f.get("name") == name), fns[0])
    return str(fn.get("name")), fn.get("parameters")


class OpenAIProtocol:
    """OpenAI chat completions on ``/v1``."""

    name: ClassVar[str] = "openai"
    stream_content_type: ClassVar[str] = "text/event-stream; charset=utf-8"

    def __init__(self, state: FakeProviderState) -> None:
        self.state = state

    def routes(self, chat: Handler) -> list[web.RouteDef]:
        return [web.post("/v1/chat/completions", chat), web.get("/v1/models", self.list_models)]

    def extract_key(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() != "bearer ":
            return None
        return auth[7:].strip() or None

    # -- requests ---------------------------------------------------------------------

    def parse(self, request: web.Request, body: bytes, key: str) -> ChatRequest:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _invalid(BAD_JSON_MESSAGE) from None
        if not isinstance(data, dict):
            raise _invalid(BAD_JSON_MESSAGE)
        for name in data:
            if name not in PARAMS:
                raise _invalid(f"Unrecognized request argument supplied: {name}")
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise _invalid("you must provide a model parameter")
        messages = data.get("messages")
        if messages is None:
            raise _invalid(
                "Missing required parameter: 'messages'.",
                param="messages",
                code="missing_required_parameter",
            )
        if not isinstance(messages, list) or not messages:
            raise _invalid(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                param="messages",
                code="empty_array",
            )
        counter = PromptCounter()
        last_user: str | None = None
        for i, msg in enumerate(messages):
            role = msg.get("role") if isinstance(msg, dict) else None
            if role not in ROLES:
                raise _invalid(
                    f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.",
                    param=f"messages[{i}].role",
                    code="invalid_value",
                )
            text = _message_text(msg, counter)
            if role == "user":
                last_user = text
        stream_options = data.get("stream_options")
        return ChatRequest(
            key=key,
            model=model,
            stream=data.get("stream") is True,
            max_tokens=_max_tokens(data),
            prompt_tokens=counter.tokens,
            last_user_text=last_user,
            last_is_user=last_turn_is_user(messages),
            tool_name=_tool_name(data),
            include_usage=isinstance(stream_options, dict)
            and stream_options.get("include_usage") is True,
            **_json_request(data),
            forced_tool=_forced_tool(data),
        )

    # -- errors -----------------------------------------------------------------------

    def invalid_request(self, message: str) -> ApiError:
        return _invalid(message)

    def _request_id(self) -> dict[str, str]:
        return {"x-request-id": self.state.ids.openai_request()}

    def missing_key_error(self) -> ApiError:
        return openai_error(
            401, MISSING_KEY_MESSAGE, "invalid_request_error", headers=self._request_id()
        )

    def invalid_key_error(self, key: str) -> ApiError:
        masked = key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 7 else key
        message = f"Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys."
        return openai_error(
            401,
            message,
            "invalid_request_error",
            code="invalid_api_key",
            headers=self._request_id(),
        )

    def quota_error(self, req: ChatRequest) -> ApiError:
        return openai_error(
            429,
            QUOTA_MESSAGE,
            "insufficient_quota",
            code="insufficient_quota",
            headers=self.headers(req),
        )

    def rate_limit_error(self, req: ChatRequest, refusal: Refusal) -> ApiError:
        unit = "requests per min (RPM)" if refusal.kind == "requests" else "tokens per min (TPM)"
        wait = max(refusal.retry_after_s, 0.001)
        message = (
            f"Rate limit reached for {req.model} in organization org-fakeprovider on {unit}: "
            f"Limit {refusal.limit}, Used {refusal.used}, Requested 1. Please try again in "
            f"{go_duration(wait)}. Visit https://platform.openai.com/account/rate-limits to learn more."
        )
        headers = self.headers(req)
        headers["retry-after"] = str(max(1, math.ceil(wait)))
        return openai_error(429, message, refusal.kind, code="rate_limit_exceeded", headers=headers)

    def status_error(self, req: ChatRequest, status: int, retry_after: float | None) -> ApiError:
        headers = self.headers(req)
        if status == 429:
            headers["retry-after"] = retry_after_header(1.0 if retry_after is None else retry_after)
            message = f"Rate limit reached for {req.model} in organization org-fakeprovider on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/rate-limits to learn more."
            return openai_error(
                429, message, "requests", code="rate_limit_exceeded", headers=headers
            )
        if retry_after is not None:
            headers["retry-after"] = retry_after_header(retry_after)
        if status == 401:
            return openai_error(
                401,
                "Incorrect API key provided.",
                "invalid_request_error",
                code="invalid_api_key",
                headers=headers,
            )
        fallback = (
            "server_error" if status >= 500 else "invalid_request_error",
            None,
            _phrase(status),
        )
        type_, code, message = STATUS_ERRORS.get(status, fallback)
        return openai_error(
            status, message.format(model=req.model), type_, code=code, headers=headers
        )

    # -- responses --------------------------------------------------------------------

    def context_length_error(self, req: ChatRequest) -> ApiError:
        tokens = max(req.prompt_tokens, CONTEXT_WINDOW + 1)
        message = CONTEXT_MESSAGE.format(window=CONTEXT_WINDOW, tokens=tokens)
        return openai_error(
            400,
            message,
            "invalid_request_error",
            param="messages",
            code="context_length_exceeded",
            headers=self._request_id(),
        )

    def content_filter(self, req: ChatRequest) -> ApiError | tuple[bytes, StreamPlan]:
        return openai_error(
            400,
            FILTER_MESSAGE,
            "invalid_request_error",
            param="prompt",
            code="content_filter",
            headers=self._request_id(),
        )

    def headers(self, req: ChatRequest) -> dict[str, str]:
        state = self.state
        now = state.monotonic()
        w = state.limiter.window(req.key, now)
        rpm = state.config.rpm or UNLIMITED_RPM
        tpm = state.config.tpm or UNLIMITED_TPM
        reset = go_duration(w.reset_in(now))
        return {
            "x-request-id": state.ids.openai_request(),
            "x-ratelimit-limit-requests": str(rpm),
            "x-ratelimit-limit-tokens": str(tpm),
            "x-ratelimit-remaining-requests": str(max(0, rpm - w.requests)),
            "x-ratelimit-remaining-tokens": str(max(0, tpm - w.tokens)),
            "x-ratelimit-reset-requests": reset if w.requests else "0s",
            "x-ratelimit-reset-tokens": reset if w.tokens else "0s",
        }

    def _usage(self, req: ChatRequest, reply: Reply) -> dict[str, Any]:
        return {
            "prompt_tokens": req.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": req.prompt_tokens + reply.completion_tokens,
            "prompt_tokens_details": ZERO_PROMPT_DETAILS,
            "completion_tokens_details": ZERO_COMPLETION_DETAILS,
        }

    def render(self, req: ChatRequest, reply: Reply) -> bytes:
        state = self.state
        call = reply.tool_call
        message: dict[str, Any] = {"role": "assistant", "content": None if call else reply.text}
        if call is not None:
            message["tool_calls"] = [
                {
                    "id": state.ids.openai_tool_call(),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
            ]
        message["refusal"] = None
        message["annotations"] = []
        return orjson.dumps(
            {
                "id": state.ids.openai_completion(),
                "object": "chat.completion",
                "created": int(state.wall_clock()),
                "model": req.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": FINISH[reply.finish],
                    }
                ],
                "usage": self._usage(req, reply),
                "service_tier": "default",
                "system_fingerprint": state.fingerprint,
            }
        )

    def stream_plan(self, req: ChatRequest, reply: Reply) -> StreamPlan:
        state = self.state
        base = {
            "id": state.ids.openai_completion(),
            "object": "chat.completion.chunk",
            "created": int(state.wall_clock()),
            "model": req.model,
            "service_tier": "default",
            "system_fingerprint": state.fingerprint,
        }
        # Every content chunk is the same JSON around its delta: build the bytes around it once.
        prefix = b"data: " + orjson.dumps(base)[:-1] + b',"choices":[{"index":0,"delta":'
        suffix = (
            b',"logprobs":null,"finish_reason":null}]'
            + (b',"usage":null' if req.include_usage else b"")
            + b"}\n\n"
        )

        def chunk(choices: list[Any], usage: Any = None) -> bytes:
            payload = {**base, "choices": choices}
            if req.include_usage:
                payload["usage"] = usage
            return data_frame(payload)

        call = reply.tool_call
        if call is None:
            first: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
            content = [prefix + orjson.dumps({"content": p}) + suffix for p in reply.pieces]
        else:
            tc = {
                "index": 0,
                "id": state.ids.openai_tool_call(),
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            first = {"role": "assistant", "content": None, "tool_calls": [tc], "refusal": None}
            content = [
                prefix
                + orjson.dumps({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
                + suffix
                for p in call.argument_pieces()
            ]
        tail = [
            chunk(
                [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": FINISH[reply.finish]}]
            )
        ]
        if req.include_usage:
            tail.append(chunk([], self._usage(req, reply)))
        tail.append(b"data: [DONE]\n\n")
        head = [prefix + orjson.dumps(first) + suffix]
        return StreamPlan(head=head, content=content, tail=tail)

    def malformed(self, req: ChatRequest) -> bytes:
        if req.stream:
            return b'data: {"id":"chatcmpl-malformed","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"alp\n\n'
        return b'{"id":"chatcmpl-malformed","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"alp'

    # -- models -----------------------------------------------------------------------

    async def list_models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: a fixed list, behind the same key check as chat."""
        key = self.extract_key(request)
        check = self.state.check_key(key)
        if check == "missing" or key is None:
            return self.missing_key_error().response()
        if check == "invalid":
            return self.invalid_key_error(key).response()
        data = [
            {"id": m, "object": "model", "created": 1_715_367_049, "owned_by": "system"}
            for m in MODELS
        ]
        body = orjson.dumps({"object": "list", "data": data})
        return web.Response(body=body, headers={"Content-Type": JSON_TYPE, **self._request_id()})


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
