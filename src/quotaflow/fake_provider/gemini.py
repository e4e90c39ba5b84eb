"""Gemini Developer API: ``POST /{v1,v1beta}/models/{model}:generateContent`` and
``:streamGenerateContent`` (``?alt=sse`` for SSE, else one JSON array).

Byte-faithful to the real API where a client can tell (PROVIDER_FORMATS.md §3): proto-JSON
field checking ("Unknown name … Cannot find field."), roles ``user``/``model``, the
``GenerateContentResponse`` with cumulative ``usageMetadata``, ``data: …\\r\\n\\r\\n`` SSE
framing with no terminator, and ``google.rpc.Status`` errors with ``ErrorInfo``,
``QuotaFailure``, ``Help`` and ``RetryInfo`` details. No rate-limit headers, like Gemini.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

import orjson
from aiohttp import web

from quotaflow.fake_provider.protocol import ApiError, ChatRequest, Handler, StreamPlan
from quotaflow.fake_provider.ratelimit import Refusal
from quotaflow.fake_provider.reply import Reply
from quotaflow.fake_provider.sse import crlf_data_frame
from quotaflow.fake_provider.state import FakeProviderState
from quotaflow.fake_provider.tokens import PromptCounter


def _with_snake_case(names: str) -> frozenset[str]:
    """Proto JSON accepts lowerCamelCase and the original snake_case names."""
    camel = names.split()
    return frozenset(camel + [re.sub("([A-Z])", r"_\1", n).lower() for n in camel])


REQUEST_FIELDS = _with_snake_case(
    "contents model systemInstruction tools toolConfig safetySettings cachedContent "
    "generationConfig labels serviceTier store"
)
GENERATION_CONFIG_FIELDS = _with_snake_case(
    "temperature topP topK candidateCount maxOutputTokens stopSequences responseLogprobs "
    "logprobs presencePenalty frequencyPenalty seed responseMimeType responseSchema "
    "responseJsonSchema _responseJsonSchema responseModalities mediaResolution speechConfig "
    "thinkingConfig imageConfig enableEnhancedCivicAnswers audioTimestamp routingConfig "
    "enableAffectiveDialog audioTranscriptionConfig"
)
ACTIONS = ("generateContent", "streamGenerateContent")
FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "RESOURCE_EXHAUSTED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
STATUS_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
    403: "The caller does not have permission",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "The request timed out. Please try again.",
}
KEY_INVALID = "API key not valid. Please pass a valid API key."
UNREGISTERED = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
    "To monitor your current usage, head to: https://ai.dev/rate-limit. \n"
    "* Quota exceeded for metric: {metric}, limit: {limit}, model: {model}\n"
    "Please retry in {delay}."
)
REQUESTS_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
TOKENS_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"
PER_MINUTE_REQUESTS = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
PER_MINUTE_TOKENS = "GenerateContentInputTokensPerModelPerMinute-FreeTier"
PER_DAY_REQUESTS = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
CONTEXT_WINDOW = 1_048_576
HELP = {
    "@type": "type.googleapis.com/google.rpc.Help",
    "links": [
        {
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
        }
    ],
}


def google_duration(seconds: float) -> str:
    """A protobuf Duration in JSON: ``37s``, ``0.5s``."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def gemini_error(status: int, message: str, details: list[Any] | None = None) -> ApiError:
    """A ``google.rpc.Status`` error response."""
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return ApiError(status, {"error": error})


def _bad_payload(name: str, where: str) -> ApiError:
    message = (
        f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': Cannot find field."
    )
    violation = {"field": where, "description": message}
    details = [
        {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}
    ]
    return gemini_error(400, message, details)


def _quota_exceeded(model: str, quota_id: str, metric: str, limit: int, retry_s: float) -> ApiError:
    delay = google_duration(retry_s)
    violation = {
        "quotaMetric": metric,
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": str(limit),
    }
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        HELP,
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
    ]
    message = QUOTA_MESSAGE.format(metric=metric, limit=limit, model=model, delay=delay)
    return gemini_error(429, message, details)


def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _count_parts(parts: Any, counter: PromptCounter) -> str:
    """Count one Content's parts; return its plain text."""
    pieces: list[str] = []
    text: list[str] = []
    images = 0
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            pieces.append(part["text"])
            text.append(part["text"])
        elif _get(part, "inlineData", "inline_data") or _get(part, "fileData", "file_data"):
            images += 1
        elif (call := _get(part, "functionCall", "function_call")) is not None:
            pieces += (str(call.get("name", "")), orjson.dumps(call.get("args", {})).decode())
        elif (result := _get(part, "functionResponse", "function_response")) is not None:
            pieces += (
                str(result.get("name", "")),
                orjson.dumps(result.get("response", {})).decode(),
            )
    counter.add_message(pieces, images)
    return "".join(text)


def _calling_config(data: dict[str, Any]) -> dict[str, Any]:
    config = data.get("toolConfig") or data.get("tool_config") or {}
    calling = _get(config, "functionCallingConfig", "function_calling_config")
    return calling if isinstance(calling, dict) else {}


def _tool_name(data: dict[str, Any]) -> str | None:
    names = [
        str(decl.get("name"))
        for tool in data.get("tools") or ()
        if isinstance(tool, dict)
        for decl in _get(tool, "functionDeclarations", "function_declarations") or ()
        if isinstance(decl, dict)
    ]
    config = _calling_config(data)
    if not names or config.get("mode") == "NONE":
        return None
    allowed = _get(config, "allowedFunctionNames", "allowed_function_names")
    return str(allowed[0]) if allowed else names[0]


def _forced_tool(data: dict[str, Any]) -> tuple[str, Any] | None:
    """The function ``ANY`` mode requires (the first allowed one), with its schema."""
    if _calling_config(data).get("mode") != "ANY":
        return None
    name = _tool_name(data)
    for tool in data.get("tools") or ():
        for decl in (
            (_get(tool, "functionDeclarations", "function_declarations") or ())
            if isinstance(tool, dict)
            else ()
        ):
            if isinstance(decl, dict) and decl.get("name") == name:
                schema = _get(decl, "parametersJsonSchema", "parameters_json_schema") or decl.get(
                    "parameters"
                )
                return str(name), schema
    return None


def _json_request(data: dict[str, Any]) -> dict[str, Any]:
    """``json_mode`` / ``json_schema`` from ``generationConfig`` (checked by the caller)."""
    gen = _get(data, "generationConfig", "generation_config") or {}
    mime = _get(gen, "responseMimeType", "response_mime_type")
    schema = _get(gen, "responseJsonSchema", "response_json_schema") or _get(
        gen, "responseSchema", "response_schema"
    )
    return {"json_mode": mime == "application/json", "json_schema": schema}


def _max_output_tokens(data: dict[str, Any]) -> int | None:
    gen = _get(data, "generationConfig", "generation_config")
    if gen is None:
        return None
    if not isinstance(gen, dict):
        raise gemini_error(
            400,
            "Invalid value at 'generation_config' (type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig)",
        )
    for name in gen:
        if name not in GENERATION_CONFIG_FIELDS:
            raise _bad_payload(name, "generation_config")
    value = _get(gen, "maxOutputTokens", "max_output_tokens")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise gemini_error(
            400,
            f"Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32), {orjson.dumps(value).decode()}",
        )
    return value if value > 0 else None


class GeminiProtocol:
    """Gemini ``generateContent`` / ``streamGenerateContent`` on ``/v1`` and ``/v1beta``."""

    name: ClassVar[str] = "gemini"
    stream_content_type: ClassVar[str] = "text/event-stream"

    def __init__(self, state: FakeProviderState) -> None:
        self.state = state

    def routes(self, chat: Handler) -> list[web.RouteDef]:
        return [web.post(r"/{version:v1|v1beta}/models/{action}", chat)]

    def extract_key(self, request: web.Request) -> str | None:
        return request.headers.get("x-goog-api-key") or request.query.get("key") or None

    # -- requests ---------------------------------------------------------------------

    def parse(self, request: web.Request, body: bytes, key: str) -> ChatRequest:
        model, _, action = request.match_info["action"].rpartition(":")
        if action not in ACTIONS or not model:
            version = request.match_info["version"]
            raise gemini_error(
                404,
                f"models/{model or action} is not found for API version {version}, or is not supported for {action or 'this method'}. Call ListModels to see the list of available models and their supported methods.",
            )
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise gemini_error(400, "Invalid JSON payload received. Unexpected token.") from None
        if not isinstance(data, dict):
            raise gemini_error(400, "Invalid JSON payload received. Expected an object.")
        for name in data:
            if name not in REQUEST_FIELDS:
                raise _bad_payload(name, "")
        contents = data.get("contents")
        if not isinstance(contents, list) or not contents:
            raise gemini_error(
                400, "* GenerateContentRequest.contents: contents is not specified\n"
            )
        counter = PromptCounter()
        system = _get(data, "systemInstruction", "system_instruction")
        if system is not None:
            if not isinstance(system, dict):
                raise gemini_error(
                    400,
                    f"Invalid value at 'system_instruction' (type.googleapis.com/google.ai.generativelanguage.v1beta.Content), {orjson.dumps(system).decode()}",
                )
            _count_parts(system.get("parts"), counter)
        last_user: str | None = None
        last_role = "user"
        for content in contents:
            if not isinstance(content, dict):
                raise gemini_error(
                    400,
                    "Invalid value at 'contents' (type.googleapis.com/google.ai.generativelanguage.v1beta.Content)",
                )
            last_role = content.get("role") or "user"
            if last_role not in ("user", "model"):
                raise gemini_error(400, "Please use a valid role: user, model.")
            text = _count_parts(content.get("parts"), counter)
            if last_role == "user":
                last_user = text
        return ChatRequest(
            key=key,
            model=model.removeprefix("models/"),
            stream=action == "streamGenerateContent",
            max_tokens=_max_output_tokens(data),
            prompt_tokens=counter.tokens,
            last_user_text=last_user,
            last_is_user=last_role == "user",
            tool_name=_tool_name(data),
            sse=request.query.get("alt") == "sse",
            **_json_request(data),
            forced_tool=_forced_tool(data),
        )

    # -- errors -----------------------------------------------------------------------

    def invalid_request(self, message: str) -> ApiError:
        return gemini_error(400, message)

    def missing_key_error(self) -> ApiError:
        return gemini_error(403, UNREGISTERED)

    def invalid_key_error(self, key: str) -> ApiError:
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": KEY_INVALID,
            },
        ]
        return gemini_error(400, KEY_INVALID, details)

    def quota_error(self, req: ChatRequest) -> ApiError:
        keys = self.state.config.keys or {}
        known = keys.get(req.key)
        limit = known.quota_tokens if known is not None and known.quota_tokens is not None else 0
        return _quota_exceeded(req.model, PER_DAY_REQUESTS, REQUESTS_METRIC, limit, 60.0)

    def rate_limit_error(self, req: ChatRequest, refusal: Refusal) -> ApiError:
        if refusal.kind == "requests":
            quota_id, metric = PER_MINUTE_REQUESTS, REQUESTS_METRIC
        else:
            quota_id, metric = PER_MINUTE_TOKENS, TOKENS_METRIC
        retry_s = float(max(1, math.ceil(refusal.retry_after_s)))
        return _quota_exceeded(req.model, quota_id, metric, refusal.limit, retry_s)

    def status_error(self, req: ChatRequest, status: int, retry_after: float | None) -> ApiError:
        if status == 429:
            limit = self.state.config.rpm or 10
            retry_s = 1.0 if retry_after is None else retry_after
            return _quota_exceeded(req.model, PER_MINUTE_REQUESTS, REQUESTS_METRIC, limit, retry_s)
        details = None
        if retry_after is not None:
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": google_duration(retry_after),
                }
            ]
        return gemini_error(status, STATUS_MESSAGES.get(status, f"HTTP {status}"), details)

    def context_length_error(self, req: ChatRequest) -> ApiError:
        tokens = max(req.prompt_tokens, CONTEXT_WINDOW + 1)
        message = (
            f"The input token count ({tokens}) exceeds the maximum number of tokens allowed "
            f"({CONTEXT_WINDOW})."
        )
        return gemini_error(400, message)

    def content_filter(self, req: ChatRequest) -> ApiError | tuple[bytes, StreamPlan]:
        # A blocked prompt is a 200 without candidates, naming the block reason.
        prompt = req.prompt_tokens
        body = {
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {
                "promptTokenCount": prompt,
                "totalTokenCount": prompt,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
            },
            "modelVersion": req.model,
            "responseId": self.state.ids.gemini_response(),
        }
        if req.sse:
            plan = StreamPlan(content=[crlf_data_frame(body)])
        else:
            plan = StreamPlan(head=[b"["], content=[orjson.dumps(body)], tail=[b"]"])
        return orjson.dumps(body), plan

    # -- responses --------------------------------------------------------------------

    def headers(self, req: ChatRequest) -> dict[str, str]:
        return {}

    def _chunk(
        self, req: ChatRequest, parts: list[Any], finish: str | None, completion: int, rid: str
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish is not None:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        prompt = req.prompt_tokens
        usage = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": completion,
            "totalTokenCount": prompt + completion,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        }
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": req.model,
            "responseId": rid,
        }

    def _parts(self, reply: Reply) -> list[Any]:
        call = reply.tool_call
        if call is not None:
            return [{"functionCall": {"name": call.name, "args": call.args}}]
        return [{"text": reply.text}]

    def render(self, req: ChatRequest, reply: Reply) -> bytes:
        rid = self.state.ids.gemini_response()
        return orjson.dumps(
            self._chunk(req, self._parts(reply), FINISH[reply.finish], reply.completion_tokens, rid)
        )

    def _stream_chunks(self, req: ChatRequest, reply: Reply) -> list[dict[str, Any]]:
        rid = self.state.ids.gemini_response()
        finish = FINISH[reply.finish]
        pieces = reply.pieces
        if reply.tool_call is not None or not pieces:
            return [self._chunk(req, self._parts(reply), finish, reply.completion_tokens, rid)]
        last = len(pieces) - 1
        return [
            self._chunk(req, [{"text": p}], finish if i == last else None, i + 1, rid)
            for i, p in enumerate(pieces)
        ]

    def stream_plan(self, req: ChatRequest, reply: Reply) -> StreamPlan:
        chunks = self._stream_chunks(req, reply)
        if req.sse:
            return StreamPlan(content=[crlf_data_frame(c) for c in chunks])
        # Without alt=sse the endpoint streams one JSON array.
        content = [(b"" if i == 0 else b",\r\n") + orjson.dumps(c) for i, c in enumerate(chunks)]
        return StreamPlan(head=[b"["], content=content, tail=[b"]"])

    def malformed(self, req: ChatRequest) -> bytes:
        body = b'{"candidates": [{"content": {"parts": [{"text": "alp'
        return b"data: " + body + b"\r\n\r\n" if req.stream and req.sse else body
