"""Validating an OpenAI chat-completions request before anything is reserved.

Bad input gets a :class:`~quotaflow.errors.BadRequest` naming the parameter, in OpenAI's
error shape. quotaflow's own fields (``complexity``, ``preferred_provider``) are taken out
here and never sent upstream.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quotaflow.errors import BadRequest

if TYPE_CHECKING:
    from quotaflow.adapters.doors.wrap import Door

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
OWN_FIELDS = ("complexity", "preferred_provider", "quotaflow")
_OWN = frozenset(OWN_FIELDS)
_STR_OR_LIST = (str, list)  # a tuple: an ``X | Y`` union is built anew on every isinstance
_NUMBER = (int, float)
MULTIPLIERS = ("n", "best_of", "candidate_count", "candidateCount")  # each completion bills
_MULTIPLY = frozenset(MULTIPLIERS)
MAX_CHOICES = 128
_SAMPLING = (
    ("temperature", 0.0, 2.0),
    ("top_p", 0.0, 1.0),
    ("presence_penalty", -2.0, 2.0),
    ("frequency_penalty", -2.0, 2.0),
)


@dataclass(slots=True)  # a value, not frozen: see quotaflow.types
class ChatRequest:
    body: dict[str, Any]  # what goes upstream (own fields removed)
    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    complexity: str | None
    preferred_provider: str | None
    user: str | None
    choices: int = 1  # completions the upstream may produce (and bill) for this request
    # The door the request came in by, when not /v1/chat/completions: it names the adapter
    # of each provider protocol (adapters/doors/wrap.py), or refuses the protocol.
    door: Door | None = None
    prompt_tokens: int | None = None  # the door's own estimate (embeddings have no messages)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, _NUMBER) and not isinstance(v, bool)


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", param="messages")
    for m in messages:
        if (
            type(m) is not dict
            or type(m.get("role")) is not str
            or m["role"] not in ROLES
            or not _content_ok(m.get("content"))
        ):
            _message_error(messages)  # the common, valid case stays one cheap test per message


def _content_ok(content: Any) -> bool:
    if content is None or type(content) is str:
        return True
    if isinstance(content, list):
        return all(isinstance(part, dict) and isinstance(part.get("type"), str) for part in content)
    return isinstance(content, str)


def _message_error(messages: list[Any]) -> None:
    """Raise the error naming the first invalid message (or part of one)."""
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise BadRequest(f"messages[{i}] must be an object", param=f"messages[{i}]")
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise BadRequest(
                f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}",
                param=f"messages[{i}].role",
            )
        content = m.get("content")
        if content is not None and not isinstance(content, _STR_OR_LIST):
            raise BadRequest(
                f"messages[{i}].content must be a string or an array of content parts",
                param=f"messages[{i}].content",
            )
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise BadRequest(
                        f"messages[{i}].content[{j}] must be an object with a 'type'",
                        param=f"messages[{i}].content[{j}]",
                    )


def _max_tokens(body: dict[str, Any], cap: int) -> int | None:
    value = None
    for name in ("max_completion_tokens", "max_tokens"):
        v = body.get(name)
        if v is None:
            continue
        if not _is_int(v):
            raise BadRequest(f"'{name}' must be an integer", param=name)
        if v < 1:
            raise BadRequest(f"'{name}' must be at least 1", param=name)
        if v > cap:
            raise BadRequest(f"'{name}' is {v}, above the gateway's cap of {cap}", param=name)
        value = v if value is None else min(value, v)
    return value


def _choices(body: dict[str, Any]) -> int:
    """How many completions the request may make the upstream generate and bill: ``n``
    (Gemini's ``candidateCount`` once translated), or more with ``best_of`` (OpenAI-compatible
    servers that sample several and return the best bill them all)."""
    most = 1
    for name in MULTIPLIERS:
        v = body.get(name)
        if v is None:
            continue
        if not _is_int(v) or not 1 <= v <= MAX_CHOICES:
            raise BadRequest(f"'{name}' must be an integer between 1 and {MAX_CHOICES}", param=name)
        most = max(most, v)
    return most


def _check_sampling(body: dict[str, Any]) -> None:
    for name, lo, hi in _SAMPLING:
        v = body.get(name)
        if v is not None and (not _is_number(v) or not lo <= v <= hi):
            raise BadRequest(f"'{name}' must be a number between {lo:g} and {hi:g}", param=name)
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise BadRequest("'stop' must be a string or an array of strings", param="stop")
    tools = body.get("tools")
    if tools is not None and (
        not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)
    ):
        raise BadRequest("'tools' must be an array of objects", param="tools")


def parse_chat_request(
    body: Any, *, max_tokens_cap: int, known_providers: Collection[str]
) -> ChatRequest:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a string", param="model")
    _check_messages(body.get("messages"))
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean", param="stream")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise BadRequest("'stream_options' must be an object", param="stream_options")
    include_usage = bool(opts.get("include_usage")) if isinstance(opts, dict) else False
    max_tokens = _max_tokens(body, max_tokens_cap)
    _check_sampling(body)
    choices = _choices(body) if not _MULTIPLY.isdisjoint(body) else 1
    complexity = body.get("complexity")
    if complexity is not None and complexity not in ("simple", "complex"):
        raise BadRequest("'complexity' must be 'simple' or 'complex'", param="complexity")
    preferred = body.get("preferred_provider")
    if preferred is not None:
        if not isinstance(preferred, str):
            raise BadRequest("'preferred_provider' must be a string", param="preferred_provider")
        if preferred not in known_providers:
            raise BadRequest(
                f"unknown preferred_provider {preferred!r} (configured: {', '.join(sorted(known_providers))})",
                param="preferred_provider",
            )
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise BadRequest("'user' must be a string", param="user")
    if _OWN.isdisjoint(body):
        upstream = dict(body)  # no own field (the common case): a plain copy
    else:
        upstream = {k: v for k, v in body.items() if k not in OWN_FIELDS}
    return ChatRequest(
        upstream, model, stream, include_usage, max_tokens, complexity, preferred, user, choices
    )
