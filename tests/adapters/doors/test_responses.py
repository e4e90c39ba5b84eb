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


CODEX_TOOLS = [
    {"type": "function", "name": "exec_command", "strict": False,
     "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
    {"type": "custom", "name": "apply_patch", "description": "Edit files.",
     "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"}},
    {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [
        {"type": "function", "name": "close_agent", "parameters": {"type": "object"}},
    ]},
    {"type": "tool_search", "execution": "client"},
    {"type": "web_search", "external_web_access": False},
]  # fmt: skip


def test_codex_tools_namespaces_custom_and_hosted() -> None:
    """Codex CLI's tool list: functions pass, a namespace's tools are flattened to
    ``<namespace>__<name>``, a freeform tool takes one string that its grammar describes,
    hosted tools are left out (and named)."""
    out = to_chat_request(
        {"model": "m", "input": "hi", "tools": CODEX_TOOLS, "tool_choice": "auto"}
    )
    fns = {t["function"]["name"]: t["function"] for t in out["tools"]}
    assert list(fns) == ["exec_command", "apply_patch", "multi_agent_v1__close_agent"]
    assert fns["exec_command"]["strict"] is False
    patch = fns["apply_patch"]["parameters"]
    assert patch["required"] == ["input"]
    assert "start: begin_patch" in patch["properties"]["input"]["description"]
    assert out["tool_choice"] == "auto"
    env = Envelope({"model": "m", "tools": CODEX_TOOLS}, created=1)
    assert env.tools.skipped == ["tool_search", "web_search"]


def test_codex_history_items_become_calls_and_answers() -> None:
    out = to_chat_request({"model": "m", "tools": CODEX_TOOLS, "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        {"type": "function_call", "call_id": "c1", "name": "close_agent", "namespace": "multi_agent_v1", "arguments": "{}"},
        {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "function_call_output", "call_id": "c1", "output": "closed"},
        {"type": "custom_tool_call_output", "call_id": "c2", "output": "Done!"},
    ]})  # fmt: skip
    dev, user, calls, r1, r2 = out["messages"]
    assert user == {"role": "user", "content": "go"}
    assert dev == {"role": "developer", "content": "rules"}
    assert [c["function"]["name"] for c in calls["tool_calls"]] == [
        "multi_agent_v1__close_agent",
        "apply_patch",
    ]
    assert orjson.loads(calls["tool_calls"][1]["function"]["arguments"]) == {
        "input": "*** Begin Patch"
    }
    assert (r1["tool_call_id"], r2["tool_call_id"], r2["content"]) == ("c1", "c2", "Done!")


def test_calls_come_back_as_namespaced_and_custom_items() -> None:
    env = Envelope({"model": "m", "tools": CODEX_TOOLS}, created=1)
    completion = {"id": "chatcmpl-1", "choices": [{"message": {"content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "multi_agent_v1__close_agent", "arguments": "{\"id\": 1}"}},
        {"id": "c2", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\": \"*** Begin Patch\\n\"}"}},
    ]}, "finish_reason": "tool_calls"}]}  # fmt: skip
    first, second = from_chat_completion(completion, env, "m")["output"]
    assert (first["type"], first["name"], first["namespace"]) == (
        "function_call",
        "close_agent",
        "multi_agent_v1",
    )
    assert first["arguments"] == '{"id": 1}'
    assert second == {
        "type": "custom_tool_call", "id": "ctc_c2", "call_id": "c2", "name": "apply_patch",
        "input": "*** Begin Patch\n", "status": "completed",
    }  # fmt: skip


def test_stream_of_a_custom_call_gives_its_text_whole() -> None:
    env = Envelope({"model": "m", "tools": CODEX_TOOLS}, created=1)
    stream = ResponsesStream(env, "m")
    frames: list[bytes] = []
    for piece in ('{"inp', 'ut": "*** Begin', ' Patch"}'):
        call = {"index": 0, "id": "c9", "function": {"name": "apply_patch", "arguments": piece}}
        frames += stream.chunk({"id": "chatcmpl-2", "choices": [{"delta": {"tool_calls": [call]}}]})
    frames += stream.done()
    events = [orjson.loads(f.split(b"data: ", 1)[1]) for f in frames]
    kinds = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" not in kinds
    assert kinds[-4:] == [
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[-3]["input"] == "*** Begin Patch"
    assert events[-1]["response"]["output"][0]["input"] == "*** Begin Patch"


def test_a_required_hosted_tool_is_refused() -> None:
    with pytest.raises(BadRequest, match="hosted tool") as err:
        to_chat_request({"model": "m", "input": "hi", "tools": CODEX_TOOLS,
                         "tool_choice": {"type": "web_search"}})  # fmt: skip
    assert err.value.param == "tool_choice"


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
