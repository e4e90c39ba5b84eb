"""Offline token estimation for reservations.

The estimate must not undershoot, or a reservation could be smaller than what the
provider then bills. Real tokenizers average about four bytes of English per token; the
estimate counts one token per **three** UTF-8 bytes plus a per-message overhead, which
sits above every mainstream tokenizer on ordinary text. Images count a fixed
:data:`IMAGE_TOKENS`. The committed usage is always the provider's own count; this is
only the worst case held while a request is in flight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

BYTES_PER_TOKEN = 3
MESSAGE_OVERHEAD = 4
REQUEST_OVERHEAD = 3
IMAGE_TOKENS = 1_600


def text_tokens(text: str) -> int:
    """Estimated tokens of one text (ceil of UTF-8 bytes / 3)."""
    n = len(text.encode("utf-8")) if not text.isascii() else len(text)
    return -(-n // BYTES_PER_TOKEN)


def _content_tokens(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return text_tokens(content)
    if type(content) is list or isinstance(content, Sequence):
        total = 0
        for part in content:
            if type(part) is dict or isinstance(part, Mapping):
                kind = part.get("type")
                if kind == "text":
                    total += text_tokens(str(part.get("text", "")))
                elif kind in ("image_url", "image", "input_image"):
                    total += IMAGE_TOKENS
                else:
                    total += text_tokens(orjson.dumps(part).decode())
            else:
                total += text_tokens(str(part))
        return total
    return text_tokens(orjson.dumps(content, default=str).decode())


def estimate_prompt_tokens(body: Mapping[str, Any]) -> int:
    """Estimated prompt tokens of an OpenAI chat request (messages, tool calls, tools)."""
    total = REQUEST_OVERHEAD
    messages = body.get("messages") or ()
    for msg in messages:
        if type(msg) is not dict and not isinstance(msg, Mapping):
            continue  # (the type test first: an ABC's isinstance is slow)
        content = msg.get("content")
        if type(content) is str:  # the common case, inline: text_tokens(content)
            n = len(content) if content.isascii() else len(content.encode("utf-8"))
            total += MESSAGE_OVERHEAD - (-n // BYTES_PER_TOKEN)
        else:
            total += MESSAGE_OVERHEAD + _content_tokens(content)
        calls = msg.get("tool_calls")
        if calls:
            total += text_tokens(orjson.dumps(calls).decode())
        name = msg.get("name")
        if isinstance(name, str):
            total += text_tokens(name)
    tools = body.get("tools")
    if tools:
        total += text_tokens(orjson.dumps(tools).decode())
    return total


def estimate_completion_tokens(text: str) -> int:
    """Tokens of produced text when the provider reported none (streams cut or unannounced)."""
    return text_tokens(text)
