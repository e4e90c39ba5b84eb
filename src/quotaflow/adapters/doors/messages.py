"""The Anthropic Messages door (``POST /v1/messages``) onto the gateway's chat model.

Decisions:

* ``system`` (a string or text blocks) becomes one leading ``system`` message; a
  mid-conversation ``{"role": "system"}`` message (text only, never first) stays where it
  is, as an OpenAI ``system`` message (Gemini folds it into the system instruction).
* A user message's ``tool_result`` blocks become ``tool`` messages placed before the rest of
  that message, as OpenAI wants a tool's answer right after the call.
* ``thinking`` and ``redacted_thinking`` blocks sent back by the client are dropped: only an
  Anthropic key could read them, and it is served natively, not through this translation.
* ``stop_reason``: ``stop`` reads as ``end_turn`` (or ``stop_sequence`` when the client sent
  stop sequences and the text stops short of the cap), ``length`` as ``max_tokens``,
  ``tool_calls`` as ``tool_use``, ``content_filter`` as ``refusal``.
* ``usage.input_tokens`` is the prompt less its cached part, which goes to
  ``cache_read_input_tokens`` (Anthropic counts them apart, OpenAI includes them).
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
    named_event,
    tool_arguments_object,
    usage_counts,
    user_message,
)
from quotaflow.adapters.doors.native import AnthropicNative
from quotaflow.adapters.doors.wrap import TranslatedAdapter
from quotaflow.errors import BadRequest

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# Anthropic's error ``type`` for each HTTP status quotaflow answers with.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}


# ---------------------------------------------------------------------------- request


def _image_part(block: Mapping[str, Any]) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, Mapping):
        raise BadRequest("an image block needs a source", param="messages")
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise BadRequest("image sources must be base64 or url", param="messages")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: Mapping[str, Any]) -> dict[str, Any]:
    source = block.get("source")
    if isinstance(source, Mapping) and source.get("type") == "base64":
        uri = f"data:{source.get('media_type')};base64,{source.get('data')}"
        return {"type": "file", "file": {"file_data": uri, "filename": "document.pdf"}}
    if isinstance(source, Mapping) and source.get("type") == "text":
        return {"type": "text", "text": str(source.get("data") or "")}
    raise BadRequest("document blocks must carry base64 or text data", param="messages")


def _user_part(block: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": str(block.get("text") or "")}
    if kind == "image":
        return _image_part(block)
    if kind == "document":
        return _document_part(block)
    if kind in ("thinking", "redacted_thinking"):
        return None
    raise BadRequest(f"content blocks of type {kind!r} are not supported", param="messages")


def _blocks(content: Any) -> list[Mapping[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, Sequence) and all(isinstance(b, Mapping) for b in content):
        return list(content)
    raise BadRequest(
        "message content must be a string or a list of content blocks", param="messages"
    )


def _tool_message(block: Mapping[str, Any]) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest("a tool_result block needs its tool_use_id", param="messages")
    content = block.get("content")
    parts = [p for p in (_user_part(b) for b in _blocks(content or "")) if p]
    text_only = all(p["type"] == "text" for p in parts)
    body: Any = "".join(p["text"] for p in parts) if text_only else parts
    if block.get("is_error") and text_only:
        body = f"Error: {body}"
    return {"role": "tool", "tool_call_id": call_id, "content": body}


def _user_messages(content: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in _blocks(content):
        if block.get("type") == "tool_result":
            out.append(_tool_message(block))
        else:
            part = _user_part(block)
            if part is not None:
                parts.append(part)
    if parts:
        out.append(user_message(parts))
    return out


def _assistant_message(content: Any) -> dict[str, Any] | None:
    text, calls = "", []
    for block in _blocks(content):
        kind = block.get("type")
        if kind == "text":
            text += str(block.get("text") or "")
        elif kind in ("tool_use", "server_tool_use"):
            calls.append(
                {
                    "id": str(block.get("id") or ""),
                    "type": "function",
                    "function": {
                        "name": str(block.get("name") or ""),
                        "arguments": _json_text(block.get("input") or {}),
                    },
                }
            )
    return assistant_message(text, calls)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _system_text(system: Any) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    return "\n".join(str(b.get("text") or "") for b in _blocks(system) if b.get("type") == "text")


def _mid_system(content: Any, first: bool) -> dict[str, Any]:
    if first:
        raise BadRequest(
            "a system message cannot be the first message: use the top-level 'system'",
            param="messages",
        )
    blocks = _blocks(content)
    if any(b.get("type") != "text" for b in blocks):
        raise BadRequest("a system message holds text blocks only", param="messages")
    return {"role": "system", "content": "".join(str(b.get("text") or "") for b in blocks)}


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, Sequence) or isinstance(tools, str):
        raise BadRequest("'tools' must be a list", param="tools")
    out = []
    for tool in tools:
        if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
            raise BadRequest("every tool needs a name", param="tools")
        if tool.get("type") not in (None, "custom"):
            raise BadRequest(
                f"server tools ({tool.get('type')}) need an Anthropic key", param="tools"
            )
        fn: dict[str, Any] = {
            "name": tool["name"],
            "parameters": dict(tool.get("input_schema") or {"type": "object"}),
        }
        if tool.get("description"):
            fn["description"] = tool["description"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any, out: dict[str, Any]) -> None:
    if not isinstance(choice, Mapping):
        return
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    else:
        raise BadRequest(f"unsupported tool_choice type {kind!r}", param="tool_choice")
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False


def to_chat_request(body: Any) -> dict[str, Any]:
    """The OpenAI chat-completions body for an Anthropic Messages request."""
    if not isinstance(body, Mapping):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a string", param="model")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise BadRequest(
            "'max_tokens' is required and must be a positive integer", param="max_tokens"
        )
    raw = body.get("messages")
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise BadRequest("'messages' must be a non-empty list", param="messages")
    messages: list[dict[str, Any]] = []
    system = _system_text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for index, msg in enumerate(raw):
        role = msg.get("role") if isinstance(msg, Mapping) else None
        if role == "user":
            messages += _user_messages(msg.get("content"))
        elif role == "assistant":
            assistant = _assistant_message(msg.get("content"))
            if assistant is not None:
                messages.append(assistant)
        elif role == "system":
            messages.append(_mid_system(msg.get("content"), index == 0))
        else:
            raise BadRequest(
                "message roles must be 'user', 'assistant' or 'system'", param="messages"
            )
    out: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
        _tool_choice(body.get("tool_choice"), out)
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    if body.get("stream") is True:
        ask_stream(out)
    return out


# ---------------------------------------------------------------------------- answer


def anthropic_usage(usage: Any) -> dict[str, int]:
    prompt, completion, cached, _ = usage_counts(usage)
    return {
        "input_tokens": max(prompt - cached, 0),
        "output_tokens": completion,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def message_id(completion_id: Any) -> str:
    text = str(completion_id or "")
    for prefix in ("chatcmpl-", "msg_"):
        text = text.removeprefix(prefix)
    return "msg_" + (text or "quotaflow")


def from_chat_completion(completion: Mapping[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` as an Anthropic ``message``."""
    choice = first_choice(completion)
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": str(call.get("id") or ""),
                "name": str(fn.get("name") or ""),
                "input": tool_arguments_object(fn.get("arguments")),
            }
        )
    return {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(str(choice.get("finish_reason")), "end_turn"),
        "stop_sequence": None,
        "usage": anthropic_usage(completion.get("usage")),
    }


def error_body(status: int, error: Mapping[str, Any]) -> dict[str, Any]:
    """Anthropic's error shape for an OpenAI error object quotaflow would have sent."""
    etype = ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": etype, "message": str(error.get("message") or "")}}


# ---------------------------------------------------------------------------- stream


class MessagesStream:
    """The gateway's OpenAI chunks as Anthropic's event sequence: ``message_start``, then per
    content block ``content_block_start`` / ``_delta`` / ``_stop``, then ``message_delta``
    (stop reason and final usage) and ``message_stop``."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._open: int | None = None  # the Anthropic index of the open block
        self._open_kind: str | None = None  # "text" or the OpenAI tool-call index as "tool:N"
        self._next = 0
        self._stop = "end_turn"
        self._usage: Any = None

    def _start(self, chunk: Mapping[str, Any]) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        message: dict[str, Any] = {
            "id": message_id(chunk.get("id")),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [named_event("message_start", {"type": "message_start", "message": message})]

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        index, self._open, self._open_kind = self._open, None, None
        return [named_event("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _open_block(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self._open, self._open_kind = self._next, kind
        self._next += 1
        event = {"type": "content_block_start", "index": self._open, "content_block": block}
        return [*out, named_event("content_block_start", event)]

    def _delta(self, delta: dict[str, Any]) -> bytes:
        event = {"type": "content_block_delta", "index": self._open, "delta": delta}
        return named_event("content_block_delta", event)

    def chunk(self, chunk: Mapping[str, Any]) -> list[bytes]:
        out = self._start(chunk)
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        choice = first_choice(chunk)
        delta = choice.get("delta") or {}
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self._open_kind != "text":
                out += self._open_block("text", {"type": "text", "text": ""})
            out.append(self._delta({"type": "text_delta", "text": text}))
        for call in delta.get("tool_calls") or ():
            out += self._tool_delta(call)
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self._stop = STOP_REASONS.get(reason, "end_turn")
        return out

    def _tool_delta(self, call: Mapping[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        kind = f"tool:{call.get('index', 0)}"
        fn = call.get("function") or {}
        if self._open_kind != kind:
            block = {
                "type": "tool_use",
                "id": str(call.get("id") or ""),
                "name": str(fn.get("name") or ""),
                "input": {},
            }
            out += self._open_block(kind, block)
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            out.append(self._delta({"type": "input_json_delta", "partial_json": args}))
        return out

    def done(self) -> list[bytes]:
        out = self._start({})
        out += self._close()
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": self._stop, "stop_sequence": None},
            "usage": anthropic_usage(self._usage),
        }
        out.append(named_event("message_delta", delta))
        out.append(named_event("message_stop", {"type": "message_stop"}))
        return out

    def error(self, error: Mapping[str, Any]) -> list[bytes]:
        body = {
            "type": "error",
            "error": {"type": "api_error", "message": str(error.get("message") or "")},
        }
        return [named_event("error", body)]


class MessagesDoor:
    """Anthropic keys get the client's request as is; every other protocol a translation."""

    model_kind = "chat"

    def __init__(self, native: Mapping[str, Any], client_headers: Mapping[str, str]) -> None:
        self._native = native
        self._headers = client_headers
        self._model = str(native.get("model") or "")

    def adapter(self, protocol: str) -> Adapter | None:
        if protocol == "anthropic":
            return AnthropicNative(self._native, self._headers)
        model = self._model
        return TranslatedAdapter(
            adapter_for(protocol),
            lambda c: from_chat_completion(c, model),
            lambda: MessagesStream(model),
        )
