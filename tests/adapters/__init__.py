"""Helpers of the adapter tests: golden files, SSE transcripts fed through a translator in
small byte slices, and OpenAI chunks reassembled the way an OpenAI client does."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from quotaflow.adapters.base import StreamTranslator
from quotaflow.adapters.sse import SSEParser

GOLDEN = Path(__file__).parent / "golden"


def golden(provider: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / provider / name).read_text())
    return data


def golden_names(provider: str, prefix: str) -> list[str]:
    return sorted(p.name for p in (GOLDEN / provider).glob(f"{prefix}*.json"))


def feed(translator: StreamTranslator, raw: bytes, slice_size: int = 29) -> list[bytes]:
    """Every frame the translator emits for a transcript arriving in ``slice_size`` pieces."""
    parser = SSEParser()
    frames: list[bytes] = []
    for i in range(0, len(raw), slice_size):
        for event in parser.feed(raw[i : i + slice_size]):
            frames += translator.feed(event)
    for event in parser.close():
        frames += translator.feed(event)
    return frames


@dataclass
class Reassembled:
    """What an OpenAI client accumulates from a chunk stream."""

    chunks: list[dict[str, Any]] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    content: dict[int, str] = field(default_factory=dict)
    tool_calls: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)
    finish_reasons: dict[int, str] = field(default_factory=dict)
    usage: list[dict[str, Any]] = field(default_factory=list)

    def calls(self, choice: int = 0) -> list[dict[str, Any]]:
        return [self.tool_calls.get(choice, {})[i] for i in sorted(self.tool_calls.get(choice, {}))]


def reassemble(frames: list[bytes]) -> Reassembled:
    out = Reassembled()
    for frame in frames:
        assert frame.startswith(b"data: ") and frame.endswith(b"\n\n"), frame
        payload = frame[len(b"data: ") : -2]
        assert payload != b"[DONE]", "translators must leave [DONE] to the gateway"
        chunk = orjson.loads(payload)
        assert chunk["object"] == "chat.completion.chunk"
        out.chunks.append(chunk)
        if not chunk["choices"]:
            out.usage.append(chunk["usage"])
        for choice in chunk["choices"]:
            _accumulate(out, choice)
    return out


def _accumulate(out: Reassembled, choice: dict[str, Any]) -> None:
    index, delta = choice["index"], choice["delta"]
    if "role" in delta:
        out.roles.append(delta["role"])
    out.content[index] = out.content.get(index, "") + (delta.get("content") or "")
    for piece in delta.get("tool_calls") or ():
        slot = out.tool_calls.setdefault(index, {}).setdefault(
            piece["index"], {"id": None, "type": None, "name": "", "arguments": ""}
        )
        if piece.get("id"):
            assert slot["id"] is None, "a tool call's id is sent once"
            slot["id"] = piece["id"]
        slot["type"] = piece.get("type") or slot["type"]
        fn = piece.get("function") or {}
        slot["name"] += fn.get("name") or ""
        slot["arguments"] += fn.get("arguments") or ""
        if "extra_content" in piece:
            slot["extra_content"] = piece["extra_content"]
    if choice["finish_reason"]:
        out.finish_reasons[index] = choice["finish_reason"]


def sdk_completion(frames: list[bytes]) -> ChatCompletion:
    """The completion the official OpenAI SDK accumulates from the frames (it validates each)."""
    state = ChatCompletionStreamState()
    for frame in frames:
        state.handle_chunk(
            ChatCompletionChunk.model_validate(orjson.loads(frame[len(b"data: ") : -2]))
        )
    return state.get_final_completion()
