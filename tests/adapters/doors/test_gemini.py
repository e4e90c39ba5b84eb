"""The Gemini door's translation, read in both directions."""

from __future__ import annotations

import orjson

from quotaflow.adapters.doors.base import Restream
from quotaflow.adapters.doors.gemini import (
    GeminiStream,
    error_body,
    from_chat_completion,
    to_chat_request,
)


def test_snake_case_calls_get_ids_and_responses_answer_them() -> None:
    out = to_chat_request({
        "system_instruction": {"parts": [{"text": "sys"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}, {"inline_data": {"mime_type": "image/png", "data": "AA=="}}]},
            {"role": "model", "parts": [{"thought": True, "text": "hmm"}, {"function_call": {"name": "f", "args": {"a": 1}}}]},
            {"role": "user", "parts": [{"function_response": {"name": "f", "response": {"ok": True}}}]},
        ],
        "tools": [{"function_declarations": [{"name": "f", "parameters": {"type": "OBJECT", "properties": {"a": {"type": "INTEGER"}}}}]}],
        "tool_config": {"function_calling_config": {"mode": "ANY"}},
        "generation_config": {"max_output_tokens": 9, "stop_sequences": ["x"], "response_mime_type": "application/json"},
    }, "gemini-x", stream=True)  # fmt: skip
    system, user, model, tool = out["messages"]
    assert system["content"] == "sys"
    assert user["content"][1]["image_url"]["url"] == "data:image/png;base64,AA=="
    assert model["content"] is None and model["tool_calls"][0]["id"] == "call_0"
    assert tool == {"role": "tool", "tool_call_id": "call_0", "content": '{"ok":true}'}
    assert out["tools"][0]["function"]["parameters"]["properties"]["a"]["type"] == "integer"
    assert out["tool_choice"] == "required"
    assert (out["max_tokens"], out["stop"]) == (9, ["x"])
    assert out["response_format"] == {"type": "json_object"}
    assert out["stream_options"] == {"include_usage": True}


def test_answer_with_reasoning_tokens() -> None:
    resp = from_chat_completion(
        {"id": "chatcmpl-7", "choices": [{"message": {"content": "ok"}, "finish_reason": "length"}],
         "usage": {"prompt_tokens": 5, "completion_tokens": 10, "completion_tokens_details": {"reasoning_tokens": 4}}},
        "gemini-x",
    )  # fmt: skip
    assert resp["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert resp["usageMetadata"] == {
        "promptTokenCount": 5, "candidatesTokenCount": 6, "totalTokenCount": 15, "thoughtsTokenCount": 4,
    }  # fmt: skip


def test_array_stream_is_one_json_array_with_calls_in_the_last_element() -> None:
    r = Restream(GeminiStream("gemini-x", sse=False))
    frames = [
        {"choices": [{"delta": {"content": "a"}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": '{"q"'}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ': 2}'}}]}}]},
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}},
    ]  # fmt: skip
    data = r.feed(b"".join(b"data: " + orjson.dumps(f) + b"\n\n" for f in frames))
    data += r.feed(b"data: [DONE]\n\n")
    first, last = orjson.loads(data)
    assert first["candidates"][0]["content"]["parts"] == [{"text": "a"}]
    assert last["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "f", "args": {"q": 2}}}
    ]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"]["totalTokenCount"] == 3


def test_error_shape() -> None:
    assert error_body(429, {"message": "m"}) == {
        "error": {"code": 429, "message": "m", "status": "RESOURCE_EXHAUSTED"}
    }
