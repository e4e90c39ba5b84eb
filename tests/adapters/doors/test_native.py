"""Native passthrough and translated door adapters, without a network."""

from __future__ import annotations

import orjson

from quotaflow.adapters.base import CallTarget, SSEEvent
from quotaflow.adapters.doors.gemini import GeminiDoor
from quotaflow.adapters.doors.messages import MessagesDoor
from quotaflow.adapters.doors.native import AnthropicNative, GeminiNative
from quotaflow.adapters.doors.wrap import TranslatedAdapter
from quotaflow.types import ErrorKind

NATIVE = {
    "model": "claude-x",
    "max_tokens": 500,
    "top_k": 5,
    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}],
}  # fmt: skip
TARGET = CallTarget("https://api.example", "claude-upstream", "sk-secret")


def test_messages_door_is_native_on_anthropic_and_translated_elsewhere() -> None:
    door = MessagesDoor(NATIVE, {})
    assert isinstance(door.adapter("anthropic"), AnthropicNative)
    assert isinstance(door.adapter("openai"), TranslatedAdapter)
    assert isinstance(GeminiDoor({}, "g", sse=True).adapter("gemini"), GeminiNative)


def test_native_request_is_the_clients_with_model_and_clamped_cap() -> None:
    native = AnthropicNative(NATIVE, {"anthropic-beta": "tools-2024", "anthropic-version": "2023-06-01", "x-other": "no"})  # fmt: skip
    call = native.build_request({}, TARGET, max_tokens=100, stream=True)
    sent = orjson.loads(call.body)
    assert sent == {**NATIVE, "model": "claude-upstream", "max_tokens": 100}
    assert call.headers["anthropic-beta"] == "tools-2024" and "x-other" not in call.headers
    assert call.headers["x-api-key"] == "sk-secret"
    assert call.url == "https://api.example/v1/messages"
    roomy = orjson.loads(native.build_request({}, TARGET, max_tokens=9000, stream=False).body)
    assert roomy["max_tokens"] == 500


def test_native_answer_passes_through_with_cache_usage() -> None:
    answer = {
        "id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "text", "text": "yo"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 2, "cache_creation_input_tokens": 30, "cache_read_input_tokens": 60},
    }  # fmt: skip
    result = AnthropicNative(NATIVE, {}).parse_response(200, {}, orjson.dumps(answer), "claude-x")
    assert result.body == answer
    assert (result.usage.prompt_tokens, result.usage.cached_tokens) == (100, 60)


def test_native_stream_forwards_events_and_keeps_usage() -> None:
    tr = AnthropicNative(NATIVE, {}).stream_translator("claude-x", False)
    events = [
        ("message_start", {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 7, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    out = b""
    for name, payload in events:
        data = orjson.dumps(payload).decode()
        out += b"".join(tr.feed(SSEEvent(name, data)))
    assert out.count(b"event: ") == 5 and b'"text":"hi"' in out
    assert tr.state.done and tr.state.usage is not None
    assert (tr.state.usage.prompt_tokens, tr.state.usage.completion_tokens) == (7, 3)
    assert tr.closing() == b""


def test_native_stream_error_is_reported_once_by_the_door() -> None:
    tr = AnthropicNative(NATIVE, {}).stream_translator("claude-x", False)
    err = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    assert tr.feed(SSEEvent("error", orjson.dumps(err).decode())) == []
    assert tr.state.error is not None and tr.state.error.kind is ErrorKind.SERVER_ERROR
    frame = tr.failed(tr.state.error)
    assert frame.startswith(b"event: error\n") and b"busy" in frame


def test_gemini_native_frames_as_sse_or_one_json_array() -> None:
    chunk = {"candidates": [{"content": {"role": "model", "parts": [{"text": "a"}]}, "finishReason": "STOP"}],
             "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4}}  # fmt: skip
    data = orjson.dumps(chunk).decode()
    sse = GeminiNative({}, sse=True).stream_translator("g", False)
    assert sse.feed(SSEEvent(None, data)) == [b"data: " + data.encode() + b"\r\n\r\n"]
    array = GeminiNative({}, sse=False).stream_translator("g", False)
    body = b"".join(array.feed(SSEEvent(None, data))) + array.closing()
    assert orjson.loads(body) == [chunk]
    assert array.state.usage is not None and array.state.usage.total_tokens == 4
    call = GeminiNative({"contents": [], "generationConfig": {"maxOutputTokens": 50}}, sse=False).build_request(
        {}, CallTarget("https://g.example/v1beta", "gemini-up", "k"), max_tokens=20, stream=True
    )  # fmt: skip
    assert call.url == "https://g.example/v1beta/models/gemini-up:streamGenerateContent?alt=sse"
    assert orjson.loads(call.body)["generationConfig"] == {"maxOutputTokens": 20}
