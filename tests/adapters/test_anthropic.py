"""The ``anthropic`` adapter against the providers' documented examples.

Sources (each golden file cites its own in ``_source``):
- Messages API: https://docs.claude.com/en/api/messages
- Streaming: https://docs.claude.com/en/docs/build-with-claude/streaming
- Tool use: https://docs.claude.com/en/docs/agents-and-tools/tool-use/implement-tool-use
- Vision: https://docs.claude.com/en/docs/build-with-claude/vision
- Errors: https://docs.claude.com/en/api/errors
- OpenAI compatibility choices: https://platform.claude.com/docs/en/api/openai-sdk
- Rate-limit headers: https://docs.claude.com/en/api/rate-limits#response-headers
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletion

from quotaflow.adapters import adapter_for
from quotaflow.adapters.anthropic import ADAPTER, RESPONSE_FORMAT_TOOL
from quotaflow.adapters.base import CallTarget, ErrorKind, MalformedResponse, SSEEvent
from quotaflow.errors import BadRequest
from quotaflow.types import Usage

from . import GOLDEN, feed, golden, golden_names, reassemble, sdk_completion

BASE = "https://api.anthropic.com"


def build(
    body: dict[str, Any],
    *,
    model: str = "claude-sonnet-4-5",
    max_tokens: int | None = None,
    stream: bool = False,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    target = CallTarget(BASE, model, "sk-ant-test", headers or {})
    call = ADAPTER.build_request(body, target, max_tokens=max_tokens, stream=stream)
    out: dict[str, Any] = orjson.loads(call.body)
    return out


def user(text: str = "Hi") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# ---------------------------------------------------------------------------- requests


@pytest.mark.parametrize("name", golden_names("anthropic", "request_"))
def test_request_matches_golden(name: str) -> None:
    case = golden("anthropic", name)
    c = case["call"]
    target = CallTarget(BASE, c["model"], "sk-ant-test")
    call = ADAPTER.build_request(
        case["openai_request"], target, max_tokens=c["max_tokens"], stream=c["stream"]
    )
    assert orjson.loads(call.body) == case["expected"]
    assert call.url == "https://api.anthropic.com/v1/messages"
    assert call.stream is c["stream"]


def test_request_headers_pin_the_version_and_carry_the_key() -> None:
    target = CallTarget(
        BASE + "/",
        "claude-haiku-4-5",
        "sk-ant-secret",
        {"anthropic-beta": "prompt-caching-2024-07-31", "x-quotaflow-no-stream-options": "1"},
    )
    call = ADAPTER.build_request({"messages": user()}, target, max_tokens=16, stream=True)
    assert call.url == "https://api.anthropic.com/v1/messages"
    assert call.headers == {
        "x-api-key": "sk-ant-secret",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "accept": "text/event-stream",
        "anthropic-beta": "prompt-caching-2024-07-31",
    }


@pytest.mark.parametrize(
    ("given", "sent"), [(0.0, 0.0), (0.7, 0.7), (1.0, 1.0), (1.5, 1.0), (2, 1.0)]
)
def test_temperature_is_capped_at_one_not_halved(given: float, sent: float) -> None:
    assert build({"messages": user(), "temperature": given})["temperature"] == sent


@pytest.mark.parametrize(
    ("body", "gateway_cap", "sent"),
    [
        ({"max_tokens": 100, "max_completion_tokens": 200}, 50, 50),
        ({"max_tokens": 100, "max_completion_tokens": 200}, None, 200),
        ({"max_tokens": 100}, None, 100),
        ({}, None, 4096),
    ],
)
def test_max_tokens_is_always_sent(
    body: dict[str, Any], gateway_cap: int | None, sent: int
) -> None:
    assert build({"messages": user(), **body}, max_tokens=gateway_cap)["max_tokens"] == sent


TOOL = {
    "type": "function",
    "function": {
        "name": "f",
        "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
    },
}


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("none", None, {"type": "none"}),
        ("none", False, {"type": "none"}),
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, True, None),
    ],
)
def test_tool_choice_mapping(choice: Any, parallel: Any, expected: dict[str, Any] | None) -> None:
    body: dict[str, Any] = {"messages": user(), "tools": [TOOL]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert build(body).get("tool_choice") == expected


def test_tool_choice_without_tools_is_not_sent() -> None:
    out = build({"messages": user(), "tool_choice": "auto", "parallel_tool_calls": False})
    assert "tool_choice" not in out
    assert "tools" not in out


def test_pdf_file_part_becomes_a_document_block() -> None:
    part = {
        "type": "file",
        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQ="},
    }
    out = build(
        {"messages": [{"role": "user", "content": [part, {"type": "text", "text": "Summarise"}]}]}
    )
    assert out["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQ="},
        },
        {"type": "text", "text": "Summarise"},
    ]


def test_cache_control_on_a_part_is_kept() -> None:
    part = {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}
    out = build({"messages": [{"role": "user", "content": [part]}]})
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}
    ]


def test_empty_assistant_prefill_is_dropped() -> None:
    out = build({"messages": [*user(), {"role": "assistant", "content": ""}]})
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]


def _call(arguments: str) -> dict[str, Any]:
    return {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": arguments}}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            {"messages": [*user(), {"role": "assistant", "tool_calls": [_call("{not json")]}]},
            "not valid JSON",
        ),
        (
            {"messages": [*user(), {"role": "assistant", "tool_calls": [_call("[1, 2]")]}]},
            "JSON object",
        ),
        ({"messages": user(), "n": 2}, "n > 1"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "role 'function'"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "input_audio",
                                "input_audio": {"data": "AA==", "format": "wav"},
                            }
                        ],
                    }
                ]
            },
            "input_audio",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/png,raw"}}
                        ],
                    }
                ]
            },
            "base64",
        ),
        ({"messages": []}, "non-empty"),
    ],
)
def test_unsupported_or_invalid_requests_are_bad_requests(
    body: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(BadRequest) as info:
        build(body)
    assert fragment in info.value.message
    assert info.value.to_openai()["error"]["type"] == "invalid_request_error"


# ---------------------------------------------------------------------------- responses


@pytest.mark.parametrize("name", golden_names("anthropic", "response_"))
def test_response_matches_golden(name: str) -> None:
    case = golden("anthropic", name)
    result = ADAPTER.parse_response(200, {}, orjson.dumps(case["provider_response"]), case["model"])
    assert result.body == case["expected"]
    u = case["expected"]["usage"]
    assert result.usage == Usage(
        u["prompt_tokens"], u["completion_tokens"], u["prompt_tokens_details"]["cached_tokens"]
    )
    assert result.finish_reason == case["expected"]["choices"][0]["finish_reason"]


def _message(content: list[dict[str, Any]], stop_reason: str | None) -> bytes:
    return orjson.dumps(
        {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 3},
        }
    )


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("refusal", "content_filter"),
        ("some_future_reason", "stop"),
    ],
)
def test_stop_reason_map(stop_reason: str, finish: str) -> None:
    result = ADAPTER.parse_response(
        200, {}, _message([{"type": "text", "text": "x"}], stop_reason), "m"
    )
    assert result.finish_reason == finish
    assert result.body["choices"][0]["finish_reason"] == finish


def test_tool_use_stop_reason_is_tool_calls() -> None:
    block = {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}}
    result = ADAPTER.parse_response(200, {}, _message([block], "tool_use"), "m")
    assert result.finish_reason == "tool_calls"
    message = result.body["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "toolu_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]


def test_response_format_tool_comes_back_as_content() -> None:
    block = {
        "type": "tool_use",
        "id": "toolu_7",
        "name": RESPONSE_FORMAT_TOOL,
        "input": {"name": "standup", "day": "Friday"},
    }
    result = ADAPTER.parse_response(200, {}, _message([block], "tool_use"), "m")
    message = result.body["choices"][0]["message"]
    assert orjson.loads(message["content"]) == {"name": "standup", "day": "Friday"}
    assert "tool_calls" not in message
    assert result.finish_reason == "stop"


@pytest.mark.parametrize(
    "body",
    [
        b"<html>bad gateway</html>",
        b"[1, 2]",
        b'{"type": "error", "error": {"type": "api_error", "message": "x"}}',
        b'{"id": "msg_1"}',
    ],
)
def test_unreadable_answers_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedResponse):
        ADAPTER.parse_response(200, {}, body, "m")


def test_tool_call_round_trip_through_openai_shapes() -> None:
    """An answer's tool_calls, sent back as the assistant turn, rebuild the same tool_use block."""
    answer = golden("anthropic", "response_tool_use.json")
    parsed = ADAPTER.parse_response(200, {}, orjson.dumps(answer["provider_response"]), "m")
    assistant = parsed.body["choices"][0]["message"]
    call = assistant["tool_calls"][0]
    out = build(
        {
            "messages": [
                *user("Weather in SF?"),
                assistant,
                {"role": "tool", "tool_call_id": call["id"], "content": "15 degrees"},
            ]
        }
    )
    assert out["messages"][1]["content"] == answer["provider_response"]["content"]
    assert out["messages"][2] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
                "content": "15 degrees",
            }
        ],
    }


# ---------------------------------------------------------------------------- streams


def test_documented_text_stream_reassembles() -> None:
    t = ADAPTER.stream_translator("claude-opus-4-6", include_usage=True)
    frames = feed(t, (GOLDEN / "anthropic" / "stream_text.sse").read_bytes())
    r = reassemble(frames)
    assert r.roles == ["assistant"]
    assert r.content == {0: "Hello!"}
    assert r.finish_reasons == {0: "stop"}
    assert r.usage == [
        {
            "prompt_tokens": 25,
            "completion_tokens": 15,
            "total_tokens": 40,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
    ]
    assert r.chunks[-1]["choices"] == []  # the usage chunk comes last
    assert all(c["usage"] is None for c in r.chunks[:-1])
    assert {c["id"] for c in r.chunks} == {"chatcmpl-msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"}
    assert {c["model"] for c in r.chunks} == {"claude-opus-4-6"}
    st = t.state
    assert st.done and st.error is None
    assert st.usage == Usage(25, 15, 0)
    assert st.finish_reason == "stop"
    assert "".join(st.text) == "Hello!"


def test_tool_use_stream_reassembles_to_the_tool_calls() -> None:
    t = ADAPTER.stream_translator("claude-sonnet-4-5", include_usage=True)
    r = reassemble(feed(t, (GOLDEN / "anthropic" / "stream_tool_use.sse").read_bytes()))
    assert r.content[0] == "Okay, let's check the weather for San Francisco, CA and New York, NY:"
    calls = r.calls()
    assert [(c["id"], c["type"], c["name"]) for c in calls] == [
        ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "function", "get_weather"),
        ("toolu_01RcJbF3e7nJ7LpQk3wBZ2yA", "function", "get_weather"),
    ]
    assert [orjson.loads(c["arguments"]) for c in calls] == [
        {"location": "San Francisco, CA", "unit": "fahrenheit"},
        {"location": "New York, NY", "unit": "fahrenheit"},
    ]
    assert r.finish_reasons == {0: "tool_calls"}
    assert r.usage[0]["prompt_tokens"] == 472 + 1024
    assert r.usage[0]["prompt_tokens_details"] == {"cached_tokens": 1024}
    assert r.usage[0]["completion_tokens"] == 89
    assert t.state.usage == Usage(1496, 89, 1024)


def test_the_openai_sdk_reads_the_translated_stream() -> None:
    t = ADAPTER.stream_translator("claude-sonnet-4-5", include_usage=True)
    done = sdk_completion(feed(t, (GOLDEN / "anthropic" / "stream_tool_use.sse").read_bytes()))
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert (
        choice.message.content
        == "Okay, let's check the weather for San Francisco, CA and New York, NY:"
    )
    assert [
        (c.id, c.function.name) for c in choice.message.tool_calls or [] if c.type == "function"
    ] == [
        ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
        ("toolu_01RcJbF3e7nJ7LpQk3wBZ2yA", "get_weather"),
    ]
    assert done.usage is not None and (done.usage.prompt_tokens, done.usage.completion_tokens) == (
        1496,
        89,
    )


@pytest.mark.parametrize("name", golden_names("anthropic", "response_"))
def test_the_openai_sdk_reads_the_translated_answer(name: str) -> None:
    case = golden("anthropic", name)
    body = ADAPTER.parse_response(200, {}, orjson.dumps(case["provider_response"]), "m").body
    parsed = ChatCompletion.model_validate(body)
    assert parsed.choices[0].finish_reason == case["expected"]["choices"][0]["finish_reason"]
    assert (
        parsed.usage is not None
        and parsed.usage.total_tokens == case["expected"]["usage"]["total_tokens"]
    )


def test_stream_without_include_usage_has_no_usage_fields() -> None:
    t = ADAPTER.stream_translator("m", include_usage=False)
    r = reassemble(feed(t, (GOLDEN / "anthropic" / "stream_text.sse").read_bytes()))
    assert r.usage == []
    assert all("usage" not in c for c in r.chunks)
    assert r.content == {0: "Hello!"}
    assert t.state.done and t.state.usage == Usage(25, 15, 0)


def _event(obj: dict[str, Any]) -> SSEEvent:
    return SSEEvent(obj["type"], orjson.dumps(obj).decode())


def test_usage_is_known_from_message_start_and_cumulative_after() -> None:
    t = ADAPTER.stream_translator("m", include_usage=True)
    t.feed(
        _event(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "usage": {"input_tokens": 30, "cache_read_input_tokens": 5, "output_tokens": 1},
                },
            }
        )
    )
    assert t.state.usage == Usage(35, 1, 5)
    assert not t.state.done
    # newer APIs repeat the input counts in message_delta: cumulative, never added again
    t.feed(
        _event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "max_tokens"},
                "usage": {"input_tokens": 30, "cache_read_input_tokens": 5, "output_tokens": 40},
            }
        )
    )
    assert t.state.usage == Usage(35, 40, 5)
    assert t.state.finish_reason == "length"
    assert not t.state.done


@pytest.mark.parametrize(
    ("error_type", "kind", "status"),
    [
        ("overloaded_error", ErrorKind.SERVER_ERROR, 529),
        ("rate_limit_error", ErrorKind.RATE_LIMITED, 429),
        ("api_error", ErrorKind.SERVER_ERROR, 500),
        ("invalid_request_error", ErrorKind.BAD_REQUEST, 400),
    ],
)
def test_error_event_mid_stream(error_type: str, kind: ErrorKind, status: int) -> None:
    t = ADAPTER.stream_translator("m", include_usage=True)
    raw = (
        (GOLDEN / "anthropic" / "stream_text.sse")
        .read_bytes()
        .split(b"event: content_block_stop")[0]
    )
    raw += (
        b'event: error\ndata: {"type": "error", "error": {"type": "%s", "message": "Overloaded"}}\n\n'
        % error_type.encode()
    )
    r = reassemble(feed(t, raw))
    assert r.content == {0: "Hello!"}
    assert r.finish_reasons == {}
    assert not t.state.done
    assert t.state.error is not None
    assert (t.state.error.kind, t.state.error.status, t.state.error.provider_code) == (
        kind,
        status,
        error_type,
    )


def test_unreadable_stream_event_is_malformed() -> None:
    t = ADAPTER.stream_translator("m", include_usage=True)
    assert t.feed(SSEEvent("message_start", "{not json")) == []
    assert t.state.error is not None and t.state.error.kind is ErrorKind.MALFORMED


def test_response_format_tool_streams_as_content() -> None:
    t = ADAPTER.stream_translator("m", include_usage=False)
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {"id": "msg_2", "usage": {"input_tokens": 9, "output_tokens": 1}},
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_x",
                "name": RESPONSE_FORMAT_TOOL,
                "input": {},
            },
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": '{"day": '},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": '"Friday"}'},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 12},
        },
        {"type": "message_stop"},
    ]
    r = reassemble([f for e in events for f in t.feed(_event(e))])
    assert orjson.loads(r.content[0]) == {"day": "Friday"}
    assert r.tool_calls == {}
    assert r.finish_reasons == {0: "stop"}


# ---------------------------------------------------------------------------- errors
# (the refusals every adapter classifies alike: tests/contracts/test_adapters.py)


def test_retry_after_ms_wins_over_retry_after() -> None:
    fail = ADAPTER.classify_error(429, {"retry-after-ms": "1500", "retry-after": "2"}, b"")
    assert (fail.kind, fail.retry_after_s) == (ErrorKind.RATE_LIMITED, 1.5)


# ---------------------------------------------------------------------------- rate limits


RATE_HEADERS = {
    "date": "Thu, 21 Aug 2025 12:40:01 GMT",
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "49",
    "anthropic-ratelimit-requests-reset": "2025-08-21T12:40:59Z",
    "anthropic-ratelimit-tokens-limit": "96000",
    "anthropic-ratelimit-tokens-remaining": "95000",
    "anthropic-ratelimit-tokens-reset": "2025-08-21T12:40:02Z",
    "anthropic-ratelimit-input-tokens-limit": "80000",
    "anthropic-ratelimit-input-tokens-remaining": "79000",
}


def test_rate_info_measures_resets_against_the_date_header() -> None:
    info = ADAPTER.rate_info(RATE_HEADERS)
    assert info is not None
    assert (info.requests_limit, info.requests_remaining, info.requests_reset_s) == (50, 49, 58.0)
    assert (info.tokens_limit, info.tokens_remaining, info.tokens_reset_s) == (96000, 95000, 1.0)


def test_rate_info_without_a_date_has_no_resets() -> None:
    info = ADAPTER.rate_info({k: v for k, v in RATE_HEADERS.items() if k != "date"})
    assert info is not None
    assert (info.requests_remaining, info.requests_reset_s, info.tokens_reset_s) == (49, None, None)


def test_rate_info_falls_back_to_input_tokens() -> None:
    headers = {k: v for k, v in RATE_HEADERS.items() if "-tokens-" not in k or "input-tokens" in k}
    info = ADAPTER.rate_info(headers)
    assert info is not None
    assert (info.tokens_limit, info.tokens_remaining) == (80000, 79000)


def test_no_rate_headers_no_rate_info() -> None:
    assert ADAPTER.rate_info({"request-id": "req_1"}) is None


def test_the_registry_serves_this_adapter() -> None:
    assert adapter_for("anthropic") is ADAPTER
