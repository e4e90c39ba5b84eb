"""The Anthropic Messages door's translation, read in both directions."""

from __future__ import annotations

import orjson
import pytest

from quotaflow.adapters.doors.base import Restream
from quotaflow.adapters.doors.messages import (
    MessagesStream,
    error_body,
    from_chat_completion,
    to_chat_request,
)
from quotaflow.errors import BadRequest

PNG = "iVBORw0KGgo="


def test_system_blocks_images_documents_and_tool_results() -> None:
    body = {
        "model": "claude-x",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u1"},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PNG}},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "tu_1", "name": "f", "input": {"a": 1}},
            ]},
            {"role": "user", "content": [
                {"type": "text", "text": "and then"},
                {"type": "tool_result", "tool_use_id": "tu_1", "is_error": True, "content": [{"type": "text", "text": "boom"}]},
            ]},
        ],
    }  # fmt: skip
    out = to_chat_request(body)
    assert out["stop"] == ["END"] and out["user"] == "u1" and out["max_tokens"] == 100
    system, user, assistant, tool, user2 = out["messages"]
    assert system == {"role": "system", "content": "one\ntwo"}
    assert [p["type"] for p in user["content"]] == ["text", "image_url", "file"]
    assert user["content"][1]["image_url"]["url"] == f"data:image/png;base64,{PNG}"
    assert assistant["content"] == "calling"
    assert assistant["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a":1}'}
    assert tool == {"role": "tool", "tool_call_id": "tu_1", "content": "Error: boom"}
    assert user2 == {"role": "user", "content": "and then"}


def test_tools_and_tool_choice() -> None:
    out = to_chat_request({
        "model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
    })  # fmt: skip
    assert out["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "description": "d"}}
    ]  # fmt: skip
    assert out["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert out["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            "messages",
        ),
    ],
)
def test_bad_requests_name_the_field(body: dict[str, object], param: str) -> None:
    with pytest.raises(BadRequest) as err:
        to_chat_request(body)
    assert err.value.param == param


def test_mid_conversation_system_message_stays_in_place() -> None:
    """Claude Code sends a ``system`` message after the user's turn (Opus 4.8's
    mid-conversation instructions): it stays where it is, as text."""
    out = to_chat_request({
        "model": "m", "max_tokens": 5, "system": "top",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": [{"type": "text", "text": "now "}, {"type": "text", "text": "brief"}]},
        ],
    })  # fmt: skip
    assert out["messages"] == [
        {"role": "system", "content": "top"},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "now brief"},
    ]


@pytest.mark.parametrize("content", [[{"type": "image", "source": {"type": "url", "url": "u"}}], 5])
def test_mid_conversation_system_message_holds_text_only(content: object) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "hi"}, {"role": "system", "content": content},
    ]}  # fmt: skip
    with pytest.raises(BadRequest) as err:
        to_chat_request(body)
    assert err.value.param == "messages"


def test_answer_with_tool_call_and_cached_usage() -> None:
    completion = {
        "id": "chatcmpl-abc",
        "choices": [{"message": {"content": "hi", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"q": 1}'}}
        ]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 6}},
    }  # fmt: skip
    msg = from_chat_completion(completion, "claude-x")
    assert msg["id"] == "msg_abc" and msg["stop_reason"] == "tool_use"
    assert msg["content"] == [
        {"type": "text", "text": "hi"},
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"q": 1}},
    ]
    assert msg["usage"] == {
        "input_tokens": 4, "output_tokens": 4,
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 6,
    }  # fmt: skip


def _frames(*chunks: dict[str, object]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)


def _events(data: bytes) -> list[tuple[str, dict[str, object]]]:
    out = []
    for block in data.decode().split("\n\n"):
        if block:
            name, payload = block.split("\n")
            out.append((name.removeprefix("event: "), orjson.loads(payload.removeprefix("data: "))))
    return out


def test_stream_text_then_tool_call_then_usage() -> None:
    r = Restream(MessagesStream("claude-x"))
    data = r.feed(_frames(
        {"id": "chatcmpl-1", "choices": [{"delta": {"role": "assistant", "content": ""}}]},
        {"id": "chatcmpl-1", "choices": [{"delta": {"content": "Hel"}}]},
        {"id": "chatcmpl-1", "choices": [{"delta": {"content": "lo"}}]},
        {"id": "chatcmpl-1", "choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]}}]},
        {"id": "chatcmpl-1", "choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"q":'}}]}}]},
        {"id": "chatcmpl-1", "choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}}]},
        {"id": "chatcmpl-1", "choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
        {"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 5}},
    ))  # fmt: skip
    data += r.feed(b"data: [DONE]\n\n")
    events = _events(data)
    assert [n for n, _ in events] == [
        "message_start",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    assert events[0][1]["message"]["id"] == "msg_1"  # type: ignore[index]
    assert events[5][1]["content_block"] == {
        "type": "tool_use",
        "id": "c1",
        "name": "f",
        "input": {},
    }
    assert events[5][1]["index"] == 1
    delta = events[9][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 5 and delta["usage"]["input_tokens"] == 7  # type: ignore[index]


def test_stream_cut_mid_way_ends_with_an_error_event() -> None:
    r = Restream(MessagesStream("claude-x"))
    data = r.feed(_frames({"choices": [{"delta": {"content": "Hi"}}]}))
    data += r.feed(_frames({"error": {"message": "upstream stream failed: reset"}}))
    name, payload = _events(data)[-1]
    assert name == "error"
    assert payload == {
        "type": "error",
        "error": {"type": "api_error", "message": "upstream stream failed: reset"},
    }


@pytest.mark.parametrize(
    ("status", "etype"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (429, "rate_limit_error"),
        (502, "api_error"),
    ],
)
def test_error_shapes(status: int, etype: str) -> None:
    assert error_body(status, {"message": "m"}) == {
        "type": "error",
        "error": {"type": etype, "message": "m"},
    }
