"""The Responses door's translation, read in both directions."""

from __future__ import annotations

import orjson
import pytest

from quotaflow.adapters.doors.base import Restream
from quotaflow.adapters.doors.responses import (
    Envelope,
    ResponsesStream,
    from_chat_completion,
    to_chat_request,
)
from quotaflow.errors import BadRequest


def test_items_become_messages_with_parallel_calls_in_one_turn() -> None:
    out = to_chat_request({
        "model": "gpt-x", "instructions": "be brief", "max_output_tokens": 30,
        "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}, "strict": True}},
        "input": [
            {"role": "user", "content": [
                {"type": "input_text", "text": "see"},
                {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
            ]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": "two"},
        ],
    })  # fmt: skip
    system, user, calls, r1, r2 = out["messages"]
    assert system == {"role": "system", "content": "be brief"}
    assert user["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "https://x/y.png", "detail": "low"},
    }
    assert [c["id"] for c in calls["tool_calls"]] == ["c1", "c2"]
    assert (r1["tool_call_id"], r2["content"]) == ("c1", "two")
    assert out["max_tokens"] == 30
    assert out["response_format"]["json_schema"]["name"] == "s"


def test_previous_response_id_is_refused_clearly() -> None:
    with pytest.raises(BadRequest, match="keeps no response state") as err:
        to_chat_request({"model": "m", "input": "hi", "previous_response_id": "resp_1"})
    assert err.value.param == "previous_response_id"


def test_non_function_tools_are_refused() -> None:
    with pytest.raises(BadRequest, match="web_search"):
        to_chat_request({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]})


def test_answer_cut_by_the_cap_is_incomplete() -> None:
    env = Envelope({"model": "m", "max_output_tokens": 3}, created=100)
    resp = from_chat_completion(
        {"id": "chatcmpl-9", "choices": [{"message": {"content": "a b c"}, "finish_reason": "length"}],
         "usage": {"prompt_tokens": 5, "completion_tokens": 3}},
        env, "m",
    )  # fmt: skip
    assert resp["id"] == "resp_9" and resp["status"] == "incomplete" and resp["created_at"] == 100
    assert resp["incomplete_details"] == {"reason": "max_output_tokens"}
    assert resp["output"][0]["content"][0]["text"] == "a b c"
    assert resp["usage"]["total_tokens"] == 8


def test_stream_text_then_call_events_in_order() -> None:
    r = Restream(ResponsesStream(Envelope({}, 0), "m"))
    frames = [
        {"id": "chatcmpl-1", "choices": [{"delta": {"content": "Hi"}}]},
        {"id": "chatcmpl-1", "choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}]}}]},
        {"id": "chatcmpl-1", "choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
        {"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3}},
    ]  # fmt: skip
    data = r.feed(b"".join(b"data: " + orjson.dumps(f) + b"\n\n" for f in frames))
    data += r.feed(b"data: [DONE]\n\n")
    events = [orjson.loads(b.split(b"\ndata: ")[1]) for b in data.split(b"\n\n") if b]
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    final = events[-1]["response"]
    assert [o["type"] for o in final["output"]] == ["message", "function_call"]
    assert final["usage"]["output_tokens"] == 3
