# Longer than 600 lines on purpose: one protocol's request, answer and stream translation, kept together.
"""The ``gemini`` protocol: Gemini ``generateContent`` behind OpenAI chat completions.

Decisions, with the reasons:

* Tool parameters and ``json_schema`` response formats go out as Gemini's OpenAPI-subset
  ``parameters``/``responseSchema`` (see :func:`gemini_schema`), not ``parametersJsonSchema``:
  the subset is accepted by every model on both ``v1`` and ``v1beta``. Local ``$ref``\\ s are
  inlined, ``["x", "null"]`` becomes ``nullable``, ``oneOf`` becomes ``anyOf``, non-string
  enums and string formats other than ``enum``/``date-time`` are dropped, and empty
  ``properties`` are omitted (each of these is a 400 upstream otherwise).
* Gemini calls carry no ids: ids are minted as ``call_<responseId>_<n>`` (or the call's own
  ``id`` when Gemini sends one); on the way back a ``tool_call_id`` is mapped to its function
  name by scanning the earlier assistant ``tool_calls`` of the same request, and the
  results answering one call turn form one user turn, in the calls' order.
* Thought signatures: a ``functionCall``'s ``thoughtSignature`` is returned on the tool call
  as ``extra_content.google.thought_signature`` (the shape of Google's own OpenAI endpoint)
  and sent back when the client returns it. When the client dropped it, models from
  Gemini 3 on (which refuse calls without one) get the documented validator-skipping
  placeholder (https://ai.google.dev/gemini-api/docs/thought-signatures).
* A tool result that is a JSON object is the ``functionResponse.response`` as is; any other
  result is wrapped as ``{"result": …}`` (the field must be an object).
* ``image_url`` with an http(s) URL becomes ``fileData`` (best effort: the model must be able
  to fetch it); ``data:`` URIs become ``inlineData``; ``input_audio`` is passed inline.
* Dropped: ``logprobs``/``top_logprobs``, ``presence_penalty``/``frequency_penalty`` (not every
  model takes them), ``parallel_tool_calls``, ``user``, ``logit_bias``, ``stream_options``.
* ``usage.prompt_tokens`` adds ``toolUsePromptTokenCount`` to ``promptTokenCount`` so that
  prompt + completion equals Gemini's ``totalTokenCount``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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
    stop_sequences,
    text_of,
    tool_arguments,
    tool_call,
)
from quotaflow.engine.tokens import estimate_completion_tokens
from quotaflow.errors import BadRequest
from quotaflow.types import Usage

# Gemini's per-day quotas reset at midnight Pacific time (PROVIDER_FORMATS §3).
QUOTA_TZ = "America/Los_Angeles"

# Google's documented placeholder for function calls whose real signature was lost.
SKIP_SIGNATURE = "skip_thought_signature_validator"

_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY")
FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"} | {
    r: "content_filter" for r in (*_FILTERED, "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION")
}

_SCHEMA_COPY = (
    "description",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "minProperties",
    "maxProperties",
    "propertyOrdering",
    "nullable",
)
_SCHEMA_FORMATS = {
    "string": {"enum", "date-time"},
    "number": {"float", "double"},
    "integer": {"int32", "int64"},
}
_IMAGE_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "heif": "image/heif",
}
_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
_RETRY_IN = re.compile(r"retry in (\d+(?:\.\d+)?)s", re.IGNORECASE)
_MAJOR = re.compile(r"gemini-(\d+)")


# ---------------------------------------------------------------------------- schemas


def gemini_schema(
    schema: Any, defs: Mapping[str, Any] | None = None, depth: int = 0
) -> dict[str, Any]:
    """A JSON Schema reduced to the OpenAPI subset Gemini's ``Schema`` accepts."""
    if not isinstance(schema, Mapping) or depth > 12:
        return {}
    if defs is None:
        defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    s = dict(schema)
    ref = s.pop("$ref", None)
    if isinstance(ref, str) and isinstance(defs.get(ref.rsplit("/", 1)[-1]), Mapping):
        return gemini_schema({**defs[ref.rsplit("/", 1)[-1]], **s}, defs, depth + 1)
    all_of = s.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], Mapping):
        return gemini_schema(
            {**all_of[0], **{k: v for k, v in s.items() if k != "allOf"}}, defs, depth + 1
        )
    out: dict[str, Any] = {k: s[k] for k in _SCHEMA_COPY if k in s}
    kind = s.get("type")
    variants = s.get("anyOf") or s.get("oneOf")
    if isinstance(kind, list):
        if "null" in kind:
            out["nullable"] = True
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
        if len(kinds) > 1:
            variants = [{"type": k} for k in kinds]
    if isinstance(variants, list):
        merged = _variants(variants, out, defs, depth)
        if merged is not None:
            return merged
    if isinstance(kind, str):
        out["type"] = kind
    _schema_values(s, out)
    _schema_children(s, out, defs, depth)
    return out


def _variants(
    variants: list[Any], out: dict[str, Any], defs: Mapping[str, Any], depth: int
) -> dict[str, Any] | None:
    """``anyOf`` without its ``null`` member; a single survivor is merged into the parent."""
    subs = [v for v in variants if not (isinstance(v, Mapping) and v.get("type") == "null")]
    if len(subs) < len(variants):
        out["nullable"] = True
    cleaned = [gemini_schema(v, defs, depth + 1) for v in subs]
    if len(cleaned) == 1:
        return {**cleaned[0], **out}
    out["anyOf"] = cleaned
    return None


def _schema_values(s: Mapping[str, Any], out: dict[str, Any]) -> None:
    enum = [s["const"]] if "const" in s else s.get("enum")
    strings = isinstance(enum, list) and enum and all(isinstance(e, str) for e in enum)
    if strings and out.setdefault("type", "string") == "string":
        out["enum"] = enum
    fmt = s.get("format")
    if isinstance(fmt, str) and fmt in _SCHEMA_FORMATS.get(str(out.get("type")), ()):
        out["format"] = fmt


def _schema_children(
    s: Mapping[str, Any], out: dict[str, Any], defs: Mapping[str, Any], depth: int
) -> None:
    props = s.get("properties")
    if isinstance(props, Mapping) and props:
        out["properties"] = {k: gemini_schema(v, defs, depth + 1) for k, v in props.items()}
        required = [r for r in s.get("required") or () if r in props]
        if required:
            out["required"] = required
    items = s.get("items")
    if isinstance(items, list):
        items = items[0] if items else None
    if isinstance(items, Mapping):
        out["items"] = gemini_schema(items, defs, depth + 1)


# ---------------------------------------------------------------------------- request


def needs_thought_signature(model: str) -> bool:
    """Whether the model refuses function calls without a thought signature (Gemini 3 on)."""
    m = _MAJOR.search(model)
    return not (m and int(m.group(1)) < 3)


def _user_part(part: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = part.get("type")
    if kind == "text":
        text = str(part.get("text") or "")
        return {"text": text} if text else None
    if kind == "image_url":
        url = image_url_of(part)
        inline = parse_data_uri(url)
        if inline:
            return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
        ext = url.split("?", 1)[0].rsplit(".", 1)[-1].lower()
        return {"fileData": {"mimeType": _IMAGE_TYPES.get(ext, "image/jpeg"), "fileUri": url}}
    if kind == "file":
        mime, data = file_data_of(part)
        return {"inlineData": {"mimeType": mime, "data": data}}
    if kind == "input_audio":
        audio = part.get("input_audio") or {}
        return {
            "inlineData": {
                "mimeType": f"audio/{audio.get('format', 'wav')}",
                "data": audio.get("data", ""),
            }
        }
    raise BadRequest(
        f"content parts of type {kind!r} are not supported by the gemini protocol", param="messages"
    )


def _function_response(content: Any) -> dict[str, Any]:
    text = content if isinstance(content, str) else text_of(content)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = text
    return value if isinstance(value, dict) else {"result": value}


class _Contents:
    """Builds ``contents`` from OpenAI messages, pairing tool results with their calls."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.system: list[str] = []
        self.contents: list[dict[str, Any]] = []
        self._calls: dict[str, tuple[str, int]] = {}  # tool_call_id → (name, position in turn)
        self._order: dict[int, int] = {}  # id(functionResponse part) → position of its call

    def add(self, msg: Mapping[str, Any]) -> None:
        role = msg.get("role")
        if role in ("system", "developer"):
            self.system.append(text_of(msg.get("content")))
        elif role == "user":
            parts = [p for p in (_user_part(x) for x in content_parts(msg.get("content"))) if p]
            self._append("user", parts, results=False)
        elif role == "assistant":
            self._append("model", self._model_parts(msg), results=False)
        elif role == "tool":
            self._append("user", [self._result_part(msg)], results=True)
        else:
            raise BadRequest(f"messages of role {role!r} are not supported", param="messages")

    def _append(self, role: str, parts: list[dict[str, Any]], *, results: bool) -> None:
        if not parts:
            return
        last = self.contents[-1] if self.contents else None
        if last is not None and last["role"] == role and _is_results(last) == results:
            last["parts"].extend(parts)
        else:
            self.contents.append({"role": role, "parts": parts})

    def _model_parts(self, msg: Mapping[str, Any]) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = [{"text": t} for t in [text_of(msg.get("content"))] if t]
        calls: list[dict[str, Any]] = []
        for pos, call in enumerate(msg.get("tool_calls") or ()):
            fn = call.get("function") or {}
            name = str(fn.get("name") or "")
            if not name:
                raise BadRequest(
                    "every assistant tool call needs a function name", param="messages"
                )
            part: dict[str, Any] = {
                "functionCall": {"name": name, "args": tool_arguments(fn.get("arguments"), name)}
            }
            signature = ((call.get("extra_content") or {}).get("google") or {}).get(
                "thought_signature"
            )
            if isinstance(signature, str) and signature:
                part["thoughtSignature"] = signature
            if isinstance(call.get("id"), str):
                self._calls[call["id"]] = (name, pos)
            calls.append(part)
        if (
            calls
            and not any("thoughtSignature" in c for c in calls)
            and needs_thought_signature(self.model)
        ):
            calls[0]["thoughtSignature"] = SKIP_SIGNATURE
        return parts + calls

    def _result_part(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        call = self._calls.get(str(msg.get("tool_call_id")))
        if call is None:
            raise BadRequest(
                f"tool message answers unknown tool_call_id {msg.get('tool_call_id')!r}",
                param="messages",
            )
        part = {
            "functionResponse": {
                "name": call[0],
                "response": _function_response(msg.get("content")),
            }
        }
        self._order[id(part)] = call[1]
        return part

    def finish(self) -> list[dict[str, Any]]:
        for c in self.contents:
            if _is_results(c):
                c["parts"].sort(key=lambda p: self._order.get(id(p), 0))
        return self.contents


def _is_results(content: Mapping[str, Any]) -> bool:
    return all("functionResponse" in p for p in content["parts"])


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("none", "auto", "required"):
        mode = {"none": "NONE", "auto": "AUTO", "required": "ANY"}[choice]
        return {"functionCallingConfig": {"mode": mode}}
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        name = choice["function"].get("name")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    raise BadRequest(f"unsupported tool_choice {choice!r}", param="tool_choice")


def _declaration(fn: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    params = gemini_schema(fn.get("parameters"))
    if params.get("properties"):  # an OBJECT with empty properties is a 400
        out["parameters"] = {**params, "type": "object"}
    return out


def _generation_config(body: Mapping[str, Any], max_tokens: int | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    cap = completion_cap(body, max_tokens)
    if cap is not None:
        cfg["maxOutputTokens"] = cap
    for src, dst in (("temperature", "temperature"), ("top_p", "topP")):
        if isinstance(body.get(src), int | float):
            cfg[dst] = body[src]
    for src, dst in (("top_k", "topK"), ("seed", "seed"), ("n", "candidateCount")):
        if isinstance(body.get(src), int) and not isinstance(body.get(src), bool):
            cfg[dst] = body[src]
    stops = stop_sequences(body.get("stop"))
    if stops:
        cfg["stopSequences"] = stops
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema"):
        cfg["responseMimeType"] = "application/json"
        spec = fmt.get("json_schema")
        schema = gemini_schema(spec.get("schema")) if isinstance(spec, Mapping) else {}
        if schema:
            cfg["responseSchema"] = schema
    return cfg


def to_gemini_request(
    body: Mapping[str, Any], model: str, max_tokens: int | None
) -> dict[str, Any]:
    """The ``generateContent`` body for an OpenAI chat-completions ``body``."""
    raw = body.get("messages")
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise BadRequest("messages must be a non-empty list", param="messages")
    builder = _Contents(model)
    for msg in raw:
        if not isinstance(msg, Mapping):
            raise BadRequest("every message must be an object", param="messages")
        builder.add(msg)
    out: dict[str, Any] = {"contents": builder.finish()}
    system = [{"text": s} for s in builder.system if s]
    if system:
        out["systemInstruction"] = {"parts": system}
    fns = function_tools(body)
    if fns:
        out["tools"] = [{"functionDeclarations": [_declaration(fn) for fn in fns]}]
        config = _tool_config(body.get("tool_choice"))
        if config is not None:
            out["toolConfig"] = config
    cfg = _generation_config(body, max_tokens)
    if cfg:
        out["generationConfig"] = cfg
    return out


# ---------------------------------------------------------------------------- response


def usage_from_gemini(u: Any) -> Usage | None:
    """``usageMetadata`` → :class:`Usage`: completion = candidates + thoughts."""
    if not isinstance(u, Mapping):
        return None
    thoughts = int(u.get("thoughtsTokenCount") or 0)
    return Usage(
        int(u.get("promptTokenCount") or 0) + int(u.get("toolUsePromptTokenCount") or 0),
        int(u.get("candidatesTokenCount") or 0) + thoughts,
        int(u.get("cachedContentTokenCount") or 0),
        thoughts,
    )


def finish_reason(reason: Any, has_tool_calls: bool) -> str:
    """OpenAI ``finish_reason`` for a Gemini ``finishReason``; a call ends with STOP."""
    if reason == "STOP" and has_tool_calls:
        return "tool_calls"
    return FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"


def call_id(response_id: str, candidate: int, n: int) -> str:
    """The OpenAI id minted for the ``n``-th function call of a candidate."""
    stem = f"call_{response_id}" if response_id else "call"
    return f"{stem}_{n}" if candidate == 0 else f"{stem}_{candidate}_{n}"


def _candidate_output(
    cand: Mapping[str, Any], response_id: str, first_call: int
) -> tuple[str, list[dict[str, Any]]]:
    """The text and the OpenAI tool calls of one candidate (or one streamed piece of it)."""
    text = ""
    calls: list[dict[str, Any]] = []
    parts = (cand.get("content") or {}).get("parts") or ()
    index = int(cand.get("index") or 0)
    for part in parts:
        if not isinstance(part, Mapping) or part.get("thought"):
            continue
        if isinstance(part.get("text"), str):
            text += part["text"]
        fc = part.get("functionCall")
        if isinstance(fc, Mapping):
            cid = fc.get("id") or call_id(response_id, index, first_call + len(calls))
            call = tool_call(
                str(cid), str(fc.get("name") or ""), orjson.dumps(fc.get("args") or {}).decode()
            )
            if isinstance(part.get("thoughtSignature"), str):
                call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
            calls.append(call)
    return text, calls


def from_gemini_response(obj: Mapping[str, Any], model: str, created: int = 0) -> ChatResult:
    """A ``GenerateContentResponse`` as an OpenAI ``chat.completion`` (one choice per candidate)."""
    rid = str(obj.get("responseId") or "")
    candidates = obj.get("candidates")
    choices: list[dict[str, Any]] = []
    if isinstance(candidates, list) and candidates:
        for pos, cand in enumerate(candidates):
            if not isinstance(cand, Mapping):
                raise MalformedResponse("a candidate of the provider's answer is not an object")
            text, calls = _candidate_output(cand, rid, 0)
            finish = finish_reason(cand.get("finishReason"), bool(calls))
            choices.append(assistant_choice(int(cand.get("index", pos)), text, calls, finish))
    elif "promptFeedback" in obj or "usageMetadata" in obj:
        blocked = (obj.get("promptFeedback") or {}).get("blockReason")
        choices.append(assistant_choice(0, "", [], "content_filter" if blocked else "stop"))
    else:
        raise MalformedResponse("the provider's answer has no candidates")
    usage = usage_from_gemini(obj.get("usageMetadata"))
    if usage is None:
        produced = "".join(
            str(c["message"]["content"] or "") + str(c["message"].get("tool_calls", ""))
            for c in choices
        )
        usage = Usage(0, estimate_completion_tokens(produced), estimated=True)
    body = completion_body(
        id=f"chatcmpl-{rid}",
        model=model or str(obj.get("modelVersion") or ""),
        choices=choices,
        usage=usage,
        created=created,
    )
    return ChatResult(body, usage, choices[0]["finish_reason"])


# ---------------------------------------------------------------------------- errors


def _error_object(body: bytes) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, list) and obj:  # the non-SSE streaming endpoint wraps it in an array
        obj = obj[0]
    err = obj.get("error") if isinstance(obj, dict) else None
    return err if isinstance(err, dict) else None


def _details(err: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    return [
        d
        for d in err.get("details") or ()
        if isinstance(d, Mapping) and str(d.get("@type", "")).endswith(f"google.rpc.{kind}")
    ]


def retry_delay_seconds(err: Mapping[str, Any], message: str) -> float | None:
    """``RetryInfo.retryDelay`` (``"37s"``, ``"1.5s"``), else the message's "retry in Xs"."""
    for info in _details(err, "RetryInfo"):
        m = _DELAY.match(str(info.get("retryDelay") or ""))
        if m:
            return float(m.group(1))
    m = _RETRY_IN.search(message)
    return float(m.group(1)) if m else None


def _is_per_day(err: Mapping[str, Any]) -> bool:
    return any(
        "PerDay" in str(v.get("quotaId", ""))
        for q in _details(err, "QuotaFailure")
        for v in q.get("violations") or ()
        if isinstance(v, Mapping)
    )


def classify_gemini_error(status: int, headers: Headers, body: bytes) -> UpstreamFailure:
    """A non-2xx Gemini answer (a ``google.rpc.Status``) → :class:`UpstreamFailure`.

    A 429 whose ``QuotaFailure`` names a per-day quota is QUOTA_EXHAUSTED (wait for the
    reset at midnight Pacific, so no retry-after); any other 429 is RATE_LIMITED after
    ``RetryInfo``. A 400 ``FAILED_PRECONDITION`` (free tier unavailable in this region,
    billing needed) is AUTH: the key cannot serve from here until someone acts.
    """
    err = _error_object(body) or {}
    message = str(err.get("message") or body[:300].decode("utf-8", "replace").strip())
    rpc_status = err.get("status") if isinstance(err.get("status"), str) else None
    reasons = [str(d.get("reason")) for d in _details(err, "ErrorInfo") if d.get("reason")]
    lowered = message.lower()
    retry = retry_after_seconds(headers)
    kind: ErrorKind
    window: str | None = None
    if status == 429:
        if _is_per_day(err):
            kind, retry, window = ErrorKind.QUOTA_EXHAUSTED, None, "day"
        else:
            kind, retry = ErrorKind.RATE_LIMITED, retry_delay_seconds(err, message) or retry
    elif (
        status in (401, 403) or "API_KEY_INVALID" in reasons or rpc_status == "FAILED_PRECONDITION"
    ):
        kind = ErrorKind.AUTH
    elif status == 402:
        kind = ErrorKind.QUOTA_EXHAUSTED
    elif status == 404:
        kind = ErrorKind.NOT_FOUND
    elif status in (408, 504):
        kind = ErrorKind.TIMEOUT
    elif status == 499:
        kind = ErrorKind.CONNECTION
    elif status >= 500:
        kind = ErrorKind.SERVER_ERROR
    elif "input token count" in lowered and "exceeds the maximum" in lowered:
        kind = ErrorKind.CONTEXT_TOO_LONG
    else:
        kind = ErrorKind.BAD_REQUEST
    code = reasons[0] if reasons else rpc_status
    message = message or f"HTTP {status}"
    return UpstreamFailure(
        kind,
        status,
        message,
        retry,
        openai_error(kind, message, code),
        code,
        quota_window=window,
        quota_tz=QUOTA_TZ if window else None,
    )


# ---------------------------------------------------------------------------- stream


class GeminiStream:
    """Gemini ``alt=sse`` chunks → OpenAI chunks. Gemini has no terminal event: the chunk
    with ``finishReason`` ends the stream (and brings the usage chunk)."""

    def __init__(self, model: str, include_usage: bool, created: int = 0) -> None:
        self.state = StreamState()
        self._out = ChunkWriter(model, include_usage, created)
        self._rid = ""
        self._calls: dict[int, int] = {}  # candidate → tool calls sent so far
        self._finished: dict[int, str] = {}

    def feed(self, event: SSEEvent) -> list[bytes]:
        if not event.data:
            return []
        try:
            obj = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            self.state.error = UpstreamFailure(
                ErrorKind.MALFORMED, 200, "unreadable stream chunk from the provider"
            )
            return []
        if not isinstance(obj, dict):
            return []
        if isinstance(obj.get("error"), dict):
            code = obj["error"].get("code")
            self.state.error = classify_gemini_error(
                code if isinstance(code, int) else 500, {}, event.data.encode()
            )
            return []
        self.state.chunks += 1
        if not self._rid and obj.get("responseId"):
            self._rid = str(obj["responseId"])
            self._out.id = f"chatcmpl-{self._rid}"
        if "usageMetadata" in obj:
            self.state.usage = usage_from_gemini(obj["usageMetadata"])  # cumulative: latest wins
        frames: list[bytes] = []
        candidates = obj.get("candidates")
        if isinstance(candidates, list) and candidates:
            for cand in candidates:
                if isinstance(cand, Mapping):
                    frames += self._candidate(cand)
        elif (obj.get("promptFeedback") or {}).get("blockReason"):
            frames += self._start(0, {}) + self._finish(0, "content_filter")
        return frames + self._maybe_done()

    def _start(self, index: int, delta: dict[str, Any]) -> list[bytes]:
        if index not in self._calls:
            self._calls[index] = 0
            delta = {"role": "assistant", "content": "", **delta}
        return [self._out.delta(delta, index)] if delta else []

    def _candidate(self, cand: Mapping[str, Any]) -> list[bytes]:
        index = int(cand.get("index") or 0)
        text, calls = _candidate_output(cand, self._rid, self._calls.get(index, 0))
        delta: dict[str, Any] = {}
        if text:
            delta["content"] = text
            self.state.text.append(text)
        if calls:
            first = self._calls.get(index, 0)
            delta["tool_calls"] = [{"index": first + k, **c} for k, c in enumerate(calls)]
            self.state.text += [c["function"]["name"] + c["function"]["arguments"] for c in calls]
        frames = self._start(index, delta)
        self._calls[index] += len(calls)
        if cand.get("finishReason"):
            frames += self._finish(
                index, finish_reason(cand["finishReason"], self._calls[index] > 0)
            )
        return frames

    def _finish(self, index: int, reason: str) -> list[bytes]:
        self._finished[index] = reason
        if index == 0 or self.state.finish_reason is None:
            self.state.finish_reason = reason
        return [self._out.finish(reason, index)]

    def _maybe_done(self) -> list[bytes]:
        if (
            self.state.done
            or not self._finished
            or any(i not in self._finished for i in self._calls)
        ):
            return []
        self.state.done = True
        return self._out.usage(self.state.usage) if self.state.usage else []


# ---------------------------------------------------------------------------- adapter


class GeminiAdapter:
    """OpenAI chat completions ↔ Gemini generateContent; see the module docstring for the choices."""

    protocol: ClassVar[str] = "gemini"

    def build_request(
        self, body: Mapping[str, Any], target: CallTarget, *, max_tokens: int | None, stream: bool
    ) -> UpstreamCall:
        model = target.model.removeprefix("models/")
        out = to_gemini_request(body, model, max_tokens)
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        headers = {
            "x-goog-api-key": target.secret,
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
        }
        copy_headers(headers, target.headers)
        url = f"{target.base_url.rstrip('/')}/models/{model}:{method}"
        return UpstreamCall(url, headers, orjson.dumps(out), stream)

    def parse_response(
        self, status: int, headers: Headers, body: bytes, model: str, created: int = 0
    ) -> ChatResult:
        obj = load_json_object(body)
        if "error" in obj and "candidates" not in obj:
            raise MalformedResponse(
                f"the provider answered 2xx with an error: {str(obj['error'])[:200]}"
            )
        return from_gemini_response(obj, model, created)

    def stream_translator(self, model: str, include_usage: bool, created: int = 0) -> GeminiStream:
        return GeminiStream(model, include_usage, created)

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamFailure:
        return redirect_failure(status, headers) or classify_gemini_error(status, headers, body)

    def rate_info(self, headers: Headers) -> RateInfo | None:
        return None  # Gemini sends no rate-limit headers; waits come in RetryInfo


ADAPTER = GeminiAdapter()
