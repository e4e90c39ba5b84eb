"""What the Anthropic and Gemini adapters share when they translate OpenAI chat completions.

Reading the client's OpenAI request (content parts, ``data:`` URIs, tool-call arguments,
the completion cap, stop sequences) and writing OpenAI answers (``chat.completion``
bodies, ``chat.completion.chunk`` frames, ``usage`` objects, error bodies). Pure functions
over plain dicts: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from quotaflow.adapters.base import ErrorKind, sse_frame
from quotaflow.errors import BadRequest, UnsupportedByProtocol
from quotaflow.types import Usage

DEFAULT_MAX_TOKENS = 4096

# OpenAI error ``type`` and ``code`` for each kind, so that clients which look for
# ``context_length_exceeded`` or ``insufficient_quota`` find them whatever the provider.
_OPENAI_ERROR = {
    ErrorKind.BAD_REQUEST: ("invalid_request_error", None),
    ErrorKind.CONTEXT_TOO_LONG: ("invalid_request_error", "context_length_exceeded"),
    ErrorKind.CONTENT_FILTERED: ("invalid_request_error", "content_filter"),
    ErrorKind.NOT_FOUND: ("invalid_request_error", "model_not_found"),
    ErrorKind.AUTH: ("authentication_error", "invalid_api_key"),
    ErrorKind.RATE_LIMITED: ("rate_limit_error", "rate_limit_exceeded"),
    ErrorKind.QUOTA_EXHAUSTED: ("insufficient_quota", "insufficient_quota"),
    ErrorKind.SERVER_ERROR: ("server_error", None),
    ErrorKind.TIMEOUT: ("server_error", "timeout"),
    ErrorKind.CONNECTION: ("server_error", None),
    ErrorKind.MALFORMED: ("server_error", None),
    ErrorKind.UNSUPPORTED: ("invalid_request_error", "unsupported_by_protocol"),
}


# ---------------------------------------------------------------------------- reading


def content_parts(content: Any) -> list[Mapping[str, Any]]:
    """An OpenAI ``content`` (string, list of parts or None) as a list of parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, Sequence):
        return [p if isinstance(p, Mapping) else {"type": "text", "text": str(p)} for p in content]
    raise BadRequest(
        "message content must be a string or a list of content parts", param="messages"
    )


def text_of(content: Any) -> str:
    """The text parts of an OpenAI ``content``, joined without separator (OpenAI's reading)."""
    return "".join(
        str(p.get("text") or "") for p in content_parts(content) if p.get("type") == "text"
    )


def parse_data_uri(url: str) -> tuple[str, str] | None:
    """``data:image/png;base64,AAAA`` → ``("image/png", "AAAA")``; None for any other URL.

    Raises :class:`BadRequest` for a ``data:`` URI that is not base64: both providers only
    take base64 inline data.
    """
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    fields = header.split(";")
    if not sep or "base64" not in fields[1:]:
        raise BadRequest("only base64 data: URIs are supported for inline files", param="messages")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("the data: URI does not hold valid base64", param="messages") from None
    return fields[0] or "application/octet-stream", data


def image_url_of(part: Mapping[str, Any]) -> str:
    """The URL of an OpenAI ``image_url`` part (the object form or the bare string form)."""
    ref = part.get("image_url")
    url = ref.get("url") if isinstance(ref, Mapping) else ref
    if not isinstance(url, str) or not url:
        raise BadRequest("an image_url part needs a url", param="messages")
    return url


def file_data_of(part: Mapping[str, Any]) -> tuple[str, str]:
    """``(mime, base64)`` of an OpenAI ``file`` part sent inline; refuses ``file_id`` references."""
    ref = part.get("file")
    data = ref.get("file_data") if isinstance(ref, Mapping) else None
    parsed = parse_data_uri(data) if isinstance(data, str) else None
    if parsed is None:
        raise BadRequest(
            "file parts must carry file_data as a base64 data: URI (file_id needs OpenAI's Files API)",
            param="messages",
        )
    return parsed


def tool_arguments(arguments: Any, name: str) -> dict[str, Any]:
    """An assistant tool call's ``arguments`` JSON string as the object the provider wants."""
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if arguments is None or arguments == "":
        return {}
    try:
        value = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        raise BadRequest(
            f"the arguments of tool call {name!r} are not valid JSON", param="messages"
        ) from None
    if not isinstance(value, dict):
        raise BadRequest(
            f"the arguments of tool call {name!r} must be a JSON object", param="messages"
        )
    return value


def completion_cap(body: Mapping[str, Any], max_tokens: int | None) -> int | None:
    """The cap to send: the gateway's, else the client's ``max_completion_tokens``/``max_tokens``."""
    for value in (max_tokens, body.get("max_completion_tokens"), body.get("max_tokens")):
        if isinstance(value, int) and not isinstance(value, bool):
            return max(value, 1)
    return None


def stop_sequences(stop: Any) -> list[str]:
    """OpenAI ``stop`` (a string or a list of strings) as a list, empty ones dropped."""
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, Sequence):
        return []
    return [s for s in stop if isinstance(s, str) and s]


def function_tools(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The ``function`` objects of the request's ``tools`` (other tool types are refused)."""
    out: list[Mapping[str, Any]] = []
    for tool in body.get("tools") or ():
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(fn, Mapping) or tool.get("type", "function") != "function":
            raise BadRequest("only tools of type 'function' are supported", param="tools")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise BadRequest("every tool function needs a name", param="tools")
        out.append(fn)
    return out


def refuse_n(body: Mapping[str, Any], provider: str) -> None:
    """Refuse ``n > 1`` for a protocol that answers one choice: a silent single choice
    would break a client that asked for several."""
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise UnsupportedByProtocol(f"n > 1 is not supported by the {provider} protocol", param="n")


def copy_headers(headers: dict[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """Add a deployment's own headers; quotaflow's ``x-quotaflow-*`` control headers stay home."""
    for k, v in extra.items():
        if not k.lower().startswith("x-quotaflow-"):
            headers[k] = v
    return headers


# ---------------------------------------------------------------------------- writing


def usage_dict(usage: Usage) -> dict[str, Any]:
    """OpenAI's ``usage`` object for a :class:`Usage`."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def completion_body(
    *,
    id: str,
    model: str,
    choices: list[dict[str, Any]],
    usage: Usage,
    created: int = 0,
) -> dict[str, Any]:
    """An OpenAI ``chat.completion``; ``created`` is the gateway's timestamp (adapters read
    no clock; 0 when none is given)."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage_dict(usage),
    }


def assistant_choice(
    index: int, text: str, tool_calls: list[dict[str, Any]], finish_reason: str
) -> dict[str, Any]:
    """One ``choices[]`` entry; ``content`` is None only when the answer is tool calls alone."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason}


def tool_call(id: str, name: str, arguments: str) -> dict[str, Any]:
    """An OpenAI ``tool_calls[]`` entry (``arguments`` is a JSON string)."""
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


class ChunkWriter:
    """Builds the OpenAI ``chat.completion.chunk`` frames of one stream.

    With ``include_usage`` every chunk carries ``"usage": null`` and :meth:`usage` writes the
    extra ``"choices": []`` chunk, exactly as OpenAI does; without it neither appears.
    """

    def __init__(self, model: str, include_usage: bool, created: int = 0) -> None:
        self.id = "chatcmpl-quotaflow"
        self.model = model
        self.include_usage = include_usage
        self.created = created

    def _frame(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = usage
        return sse_frame(orjson.dumps(chunk))

    def delta(self, delta: dict[str, Any], index: int = 0) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
        return self._frame([choice], None)

    def finish(self, finish_reason: str, index: int = 0) -> bytes:
        choice = {"index": index, "delta": {}, "logprobs": None, "finish_reason": finish_reason}
        return self._frame([choice], None)

    def usage(self, usage: Usage) -> list[bytes]:
        return [self._frame([], usage_dict(usage))] if self.include_usage else []


def openai_error(kind: ErrorKind, message: str, provider_code: str | None) -> dict[str, Any]:
    """The OpenAI-shaped error body handed back to the client for a classified failure."""
    etype, code = _OPENAI_ERROR[kind]
    return {
        "error": {"message": message, "type": etype, "param": None, "code": code or provider_code}
    }
