"""Gemini's own API as a door (``models/{model}:generateContent`` and
``:streamGenerateContent``) onto the gateway's chat model.

Decisions:

* Field names are read in camelCase (what the REST API and ``google-genai`` send) and in
  snake_case (what the API accepts too).
* ``functionCall`` parts carry no id in most answers; the door names them ``call_<n>`` in
  the order they appear, and a ``functionResponse`` answers the oldest open call of its
  name.
* Parts marked ``thought`` are dropped from the request: only Gemini reads them.
* A streamed answer sends text as it comes; function calls are sent whole in the last
  chunk (Gemini never splits a call), with ``finishReason`` and ``usageMetadata``.
* ``usageMetadata.candidatesTokenCount`` is the completion less its reasoning, which goes
  to ``thoughtsTokenCount``, as Gemini counts them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from quotaflow.adapters import adapter_for
from quotaflow.adapters.base import Adapter
from quotaflow.adapters.doors.base import (
    ask_stream,
    assistant_message,
    first_choice,
    tool_arguments_object,
    usage_counts,
    user_message,
)
from quotaflow.adapters.doors.native import GeminiNative
from quotaflow.adapters.doors.wrap import TranslatedAdapter
from quotaflow.errors import BadRequest

FINISH_REASONS = {
    "stop": "STOP",
    "tool_calls": "STOP",
    "function_call": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
}

# Google's canonical error ``status`` for each HTTP status quotaflow answers with.
ERROR_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def field(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


# ---------------------------------------------------------------------------- request


class _Calls:
    """Tool-call ids for a conversation whose calls have none."""

    def __init__(self) -> None:
        self._n = 0
        self._open: list[tuple[str, str]] = []  # (name, id) not yet answered

    def call(self, name: str, given: Any) -> str:
        call_id = given if isinstance(given, str) and given else f"call_{self._n}"
        self._n += 1
        self._open.append((name, call_id))
        return call_id

    def answer(self, name: str, given: Any) -> str:
        for i, (open_name, call_id) in enumerate(self._open):
            if (isinstance(given, str) and given == call_id) or (not given and open_name == name):
                del self._open[i]
                return call_id
        return given if isinstance(given, str) and given else f"call_{name}"


def _user_part(part: Mapping[str, Any]) -> dict[str, Any] | None:
    if isinstance(part.get("text"), str):
        return None if part.get("thought") else {"type": "text", "text": part["text"]}
    inline = field(part, "inlineData", "inline_data")
    if isinstance(inline, Mapping):
        mime = str(field(inline, "mimeType", "mime_type") or "application/octet-stream")
        uri = f"data:{mime};base64,{inline.get('data') or ''}"
        if mime.startswith("image/"):
            return {"type": "image_url", "image_url": {"url": uri}}
        return {"type": "file", "file": {"file_data": uri, "filename": "file"}}
    file = field(part, "fileData", "file_data")
    if isinstance(file, Mapping):
        uri = str(field(file, "fileUri", "file_uri") or "")
        return {"type": "image_url", "image_url": {"url": uri}}
    raise BadRequest(f"unsupported part: {', '.join(sorted(part))}", param="contents")


def _parts(content: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    parts = content.get("parts")
    if not isinstance(parts, Sequence) or not all(isinstance(p, Mapping) for p in parts):
        raise BadRequest("every content needs a list of parts", param="contents")
    return list(parts)


def _model_message(content: Mapping[str, Any], calls: _Calls) -> dict[str, Any] | None:
    text, tool_calls = "", []
    for part in _parts(content):
        fc = field(part, "functionCall", "function_call")
        if isinstance(fc, Mapping):
            name = str(fc.get("name") or "")
            args = orjson.dumps(fc.get("args") or {}).decode()
            fn = {"name": name, "arguments": args}
            tool_calls.append(
                {"id": calls.call(name, fc.get("id")), "type": "function", "function": fn}
            )
        elif isinstance(part.get("text"), str) and not part.get("thought"):
            text += part["text"]
    return assistant_message(text, tool_calls)


def _user_messages(content: Mapping[str, Any], calls: _Calls) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for part in _parts(content):
        fr = field(part, "functionResponse", "function_response")
        if isinstance(fr, Mapping):
            name = str(fr.get("name") or "")
            result = orjson.dumps(fr.get("response") or {}).decode()
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": calls.answer(name, fr.get("id")),
                    "content": result,
                }
            )
            continue
        converted = _user_part(part)
        if converted is not None:
            parts.append(converted)
    if parts:
        out.append(user_message(parts))
    return out


def _system(body: Mapping[str, Any]) -> str:
    system = field(body, "systemInstruction", "system_instruction")
    if isinstance(system, str):
        return system
    if not isinstance(system, Mapping):
        return ""
    return "\n".join(str(p.get("text") or "") for p in _parts(system))


def _tools(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for tool in body.get("tools") or ():
        declarations = (
            field(tool, "functionDeclarations", "function_declarations")
            if isinstance(tool, Mapping)
            else None
        )
        if not isinstance(declarations, Sequence):
            raise BadRequest("only functionDeclarations tools are supported", param="tools")
        for d in declarations:
            schema = field(d, "parametersJsonSchema", "parameters_json_schema") or d.get(
                "parameters"
            )
            fn: dict[str, Any] = {"name": d.get("name"), "parameters": _json_schema(schema)}
            if d.get("description"):
                fn["description"] = d["description"]
            out.append({"type": "function", "function": fn})
    return out


def _json_schema(schema: Any) -> Any:
    """Gemini's OpenAPI subset (upper-case ``type`` names) as JSON Schema."""
    if isinstance(schema, Mapping):
        return {
            k: (v.lower() if k == "type" and isinstance(v, str) else _json_schema(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_json_schema(v) for v in schema]
    return schema if schema is not None else {"type": "object", "properties": {}}


def _tool_choice(body: Mapping[str, Any]) -> Any:
    config = field(body, "toolConfig", "tool_config")
    fcc = (
        field(config, "functionCallingConfig", "function_calling_config")
        if isinstance(config, Mapping)
        else None
    )
    if not isinstance(fcc, Mapping):
        return None
    mode = str(fcc.get("mode") or "AUTO").upper()
    allowed = field(fcc, "allowedFunctionNames", "allowed_function_names")
    if mode == "ANY" and isinstance(allowed, Sequence) and len(allowed) == 1:
        return {"type": "function", "function": {"name": allowed[0]}}
    return {"ANY": "required", "NONE": "none"}.get(mode, "auto")


def _generation(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    gen = field(body, "generationConfig", "generation_config")
    if not isinstance(gen, Mapping):
        return
    for camel, snake, name in (
        ("temperature", "temperature", "temperature"),
        ("topP", "top_p", "top_p"),
        ("maxOutputTokens", "max_output_tokens", "max_tokens"),
        ("stopSequences", "stop_sequences", "stop"),
        ("candidateCount", "candidate_count", "n"),
        ("presencePenalty", "presence_penalty", "presence_penalty"),
        ("frequencyPenalty", "frequency_penalty", "frequency_penalty"),
        ("seed", "seed", "seed"),
    ):
        value = field(gen, camel, snake)
        if value is not None:
            out[name] = value
    schema = field(gen, "responseJsonSchema", "response_json_schema") or field(
        gen, "responseSchema", "response_schema"
    )
    if schema is not None:
        spec = {"name": "response", "schema": _json_schema(schema)}
        out["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif field(gen, "responseMimeType", "response_mime_type") == "application/json":
        out["response_format"] = {"type": "json_object"}


def to_chat_request(body: Any, model: str, stream: bool) -> dict[str, Any]:
    """The OpenAI chat-completions body for a ``generateContent`` request on ``model``."""
    if not isinstance(body, Mapping):
        raise BadRequest("the request body must be a JSON object")
    contents = body.get("contents")
    if not isinstance(contents, Sequence) or isinstance(contents, str) or not contents:
        raise BadRequest("'contents' must be a non-empty list", param="contents")
    calls = _Calls()
    messages: list[dict[str, Any]] = []
    system = _system(body)
    if system:
        messages.append({"role": "system", "content": system})
    for content in contents:
        if not isinstance(content, Mapping):
            raise BadRequest("every content must be an object", param="contents")
        if content.get("role") == "model":
            msg = _model_message(content, calls)
            if msg is not None:
                messages.append(msg)
        else:
            messages += _user_messages(content, calls)
    out: dict[str, Any] = {"model": model, "messages": messages}
    _generation(body, out)
    tools = _tools(body)
    if tools:
        out["tools"] = tools
        choice = _tool_choice(body)
        if choice is not None:
            out["tool_choice"] = choice
    if stream:
        ask_stream(out)
    return out


# ---------------------------------------------------------------------------- answer


def usage_metadata(usage: Any) -> dict[str, int]:
    prompt, completion, cached, reasoning = usage_counts(usage)
    meta = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": max(completion - reasoning, 0),
        "totalTokenCount": prompt + completion,
    }
    if cached:
        meta["cachedContentTokenCount"] = cached
    if reasoning:
        meta["thoughtsTokenCount"] = reasoning
    return meta


def _call_part(call: Mapping[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    fc = {"name": str(fn.get("name") or ""), "args": tool_arguments_object(fn.get("arguments"))}
    return {"functionCall": fc}


def _candidate(parts: list[dict[str, Any]], finish: Any) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = FINISH_REASONS.get(str(finish), "STOP")
    return candidate


def from_chat_completion(completion: Mapping[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` as a ``GenerateContentResponse``."""
    choice = first_choice(completion)
    message = choice.get("message") or {}
    parts: list[dict[str, Any]] = []
    if isinstance(message.get("content"), str) and message["content"]:
        parts.append({"text": message["content"]})
    parts += [_call_part(c) for c in message.get("tool_calls") or ()]
    return {
        "candidates": [_candidate(parts, choice.get("finish_reason") or "stop")],
        "usageMetadata": usage_metadata(completion.get("usage")),
        "modelVersion": model,
        "responseId": str(completion.get("id") or "").removeprefix("chatcmpl-"),
    }


def error_body(status: int, error: Mapping[str, Any]) -> dict[str, Any]:
    """Google's error shape for an OpenAI error object quotaflow would have sent."""
    return {
        "error": {
            "code": status,
            "message": str(error.get("message") or ""),
            "status": ERROR_STATUS.get(status, "INTERNAL"),
        }
    }


# ---------------------------------------------------------------------------- stream


class GeminiStream:
    """The gateway's OpenAI chunks as streamed ``GenerateContentResponse`` objects: as SSE
    ``data:`` events (``alt=sse``) or as the elements of one JSON array (the default)."""

    def __init__(self, model: str, sse: bool) -> None:
        self._model = model
        self._sse = sse
        self._sent = 0
        self._calls: dict[int, dict[str, Any]] = {}
        self._finish: Any = None
        self._usage: Any = None
        self._id = ""

    def _frame(self, obj: dict[str, Any]) -> bytes:
        data = orjson.dumps(obj)
        self._sent += 1
        if self._sse:
            return b"data: " + data + b"\r\n\r\n"
        return (b"[" if self._sent == 1 else b",\r\n") + data

    def _response(self, parts: list[dict[str, Any]], finish: Any) -> dict[str, Any]:
        return {
            "candidates": [_candidate(parts, finish)],
            "modelVersion": self._model,
            "responseId": self._id,
        }

    def chunk(self, chunk: Mapping[str, Any]) -> list[bytes]:
        self._id = self._id or str(chunk.get("id") or "").removeprefix("chatcmpl-")
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        choice = first_choice(chunk)
        delta = choice.get("delta") or {}
        for call in delta.get("tool_calls") or ():
            entry = self._calls.setdefault(
                int(call.get("index") or 0), {"function": {"name": "", "arguments": ""}}
            )
            fn = call.get("function") or {}
            entry["function"]["name"] += str(fn.get("name") or "")
            entry["function"]["arguments"] += str(fn.get("arguments") or "")
        if choice.get("finish_reason") is not None:
            self._finish = choice["finish_reason"]
        text = delta.get("content")
        if isinstance(text, str) and text:
            return [self._frame(self._response([{"text": text}], None))]
        return []

    def done(self) -> list[bytes]:
        parts = [_call_part(self._calls[i]) for i in sorted(self._calls)]
        last = self._response(parts or [{"text": ""}], self._finish or "stop")
        last["usageMetadata"] = usage_metadata(self._usage)
        out = [self._frame(last)]
        if not self._sse:
            out.append(b"]")
        return out

    def error(self, error: Mapping[str, Any]) -> list[bytes]:
        body = error_body(502, error)
        out = [self._frame(body)]
        if not self._sse:
            out.append(b"]")
        return out


class GeminiDoor:
    """Gemini keys get the client's request as is; every other protocol a translation."""

    model_kind = "chat"

    def __init__(self, native: Mapping[str, Any], model: str, sse: bool) -> None:
        self._native = native
        self._model = model
        self._sse = sse

    def adapter(self, protocol: str) -> Adapter | None:
        if protocol == "gemini":
            return GeminiNative(self._native, self._sse)
        model, sse = self._model, self._sse
        return TranslatedAdapter(
            adapter_for(protocol),
            lambda c: from_chat_completion(c, model),
            lambda: GeminiStream(model, sse),
        )
