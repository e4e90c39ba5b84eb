"""What every door's stream renderer provides, and the reader of the gateway's OpenAI frames.

The gateway streams OpenAI ``chat.completion.chunk`` frames, then ``data: [DONE]`` once the
ledger row is written, or one error frame when the answer was cut. :class:`Restream` reads
those bytes as they are written and hands each piece to a door's :class:`DoorStream`, whose
output goes to the client instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from quotaflow.adapters.sse import SSEParser


class DoorStream(Protocol):
    def chunk(self, chunk: Mapping[str, Any]) -> list[bytes]:
        """The door's bytes for one OpenAI ``chat.completion.chunk``."""
        ...

    def done(self) -> list[bytes]:
        """The door's closing bytes, once the answer is complete and billed."""
        ...

    def error(self, error: Mapping[str, Any]) -> list[bytes]:
        """The door's bytes for an answer cut mid-way (``error`` is OpenAI's error object)."""
        ...


class Restream:
    """Feeds the gateway's OpenAI SSE bytes to a :class:`DoorStream`, returns its bytes."""

    def __init__(self, door: DoorStream) -> None:
        self._door = door
        self._parser = SSEParser()

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for event in self._parser.feed(data):
            if event.data == "[DONE]":
                out += self._door.done()
                continue
            try:
                obj = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(obj, dict):
                continue
            if isinstance(obj.get("error"), dict):
                out += self._door.error(obj["error"])
            else:
                out += self._door.chunk(obj)
        return b"".join(out)


def named_event(name: str, payload: Mapping[str, Any]) -> bytes:
    """One SSE event with an ``event:`` name, as Anthropic and the Responses API send them."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def usage_counts(usage: Any) -> tuple[int, int, int, int]:
    """``(prompt, completion, cached, reasoning)`` tokens of an OpenAI ``usage`` object."""
    if not isinstance(usage, Mapping):
        return 0, 0, 0, 0
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, Mapping) else 0
    reasoning = (
        completion_details.get("reasoning_tokens") if isinstance(completion_details, Mapping) else 0
    )
    return (
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        int(cached or 0),
        int(reasoning or 0),
    )


def first_choice(completion: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = completion.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
        return choices[0]
    return {}


def tool_arguments_object(arguments: Any) -> Any:
    """An OpenAI tool call's ``arguments`` string as a JSON value (``{}`` when unreadable)."""
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if not isinstance(arguments, str) or not arguments:
        return {}
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}


def assistant_message(text: str, calls: list[dict[str, Any]]) -> dict[str, Any] | None:
    """An OpenAI assistant message of text and tool calls; None when it holds neither."""
    if not text and not calls:
        return None
    msg: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        msg["tool_calls"] = calls
    return msg


def user_message(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """An OpenAI user message; text alone is sent as a plain string."""
    if all(p["type"] == "text" for p in parts):
        return {"role": "user", "content": "".join(p["text"] for p in parts)}
    return {"role": "user", "content": parts}


def ask_stream(out: dict[str, Any]) -> None:
    """Stream the answer, with usage at the end: every door reports it."""
    out["stream"] = True
    out["stream_options"] = {"include_usage": True}
