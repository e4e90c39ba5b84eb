"""The ``gemini`` adapter against the providers' documented examples.

Sources (each golden file cites its own in ``_source``):
- generateContent reference: https://ai.google.dev/api/generate-content
- Text generation, system instructions, chat: https://ai.google.dev/gemini-api/docs/text-generation
- Function calling: https://ai.google.dev/gemini-api/docs/function-calling
- Thought signatures: https://ai.google.dev/gemini-api/docs/thought-signatures
- Structured output: https://ai.google.dev/gemini-api/docs/structured-output
- Errors and rate limits: https://ai.google.dev/gemini-api/docs/troubleshooting,
  https://ai.google.dev/gemini-api/docs/rate-limits
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from quotaflow.adapters import adapter_for
from quotaflow.adapters.base import CallTarget, ErrorKind, MalformedResponse, SSEEvent
from quotaflow.adapters.gemini import ADAPTER, gemini_schema
from quotaflow.errors import BadRequest
from quotaflow.types import Usage

from . import GOLDEN, feed, golden, golden_names, reassemble, sdk_completion

BASE = "https://generativelanguage.googleapis.com/v1beta"
# The placeholder Google documents for calls whose real signature is lost (thought-signatures FAQ).
SKIP_SIGNATURE = "skip_thought_signature_validator"


def build(
    body: dict[str, Any], *, model: str = "gemini-2.5-flash", max_tokens: int | None = None
) -> dict[str, Any]:
    call = ADAPTER.build_request(
        body, CallTarget(BASE, model, "AIza-test"), max_tokens=max_tokens, stream=False
    )
    out: dict[str, Any] = orjson.loads(call.body)
    return out


def user(text: str = "Hi") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# ---------------------------------------------------------------------------- requests


@pytest.mark.parametrize("name", golden_names("gemini", "request_"))
def test_request_matches_golden(name: str) -> None:
    case = golden("gemini", name)
    c = case["call"]
    call = ADAPTER.build_request(
        case["openai_request"],
        CallTarget(BASE, c["model"], "AIza-test"),
        max_tokens=c["max_tokens"],
        stream=c["stream"],
    )
    assert orjson.loads(call.body) == case["expected"]
    method = "streamGenerateContent?alt=sse" if c["stream"] else "generateContent"
    assert call.url == f"{BASE}/models/{c['model']}:{method}"


def test_request_url_and_headers() -> None:
    target = CallTarget(
        BASE + "/",
        "models/gemini-2.5-pro",
        "AIza-secret",
        {"x-goog-user-project": "p1", "x-quotaflow-x": "1"},
    )
    call = ADAPTER.build_request({"messages": user()}, target, max_tokens=None, stream=True)
    assert call.url == f"{BASE}/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    assert call.stream is True
    assert call.headers == {
        "x-goog-api-key": "AIza-secret",
        "content-type": "application/json",
        "accept": "text/event-stream",
        "x-goog-user-project": "p1",
    }
    assert orjson.loads(call.body) == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def _tool_turn(signature: str | None) -> list[dict[str, Any]]:
    call: dict[str, Any] = {
        "id": "call_a",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
    }
    if signature:
        call["extra_content"] = {"google": {"thought_signature": signature}}
    return [
        *user(),
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_a", "content": "ok"},
    ]


@pytest.mark.parametrize(
    ("model", "signature", "sent"),
    [
        ("gemini-3-pro-preview", None, SKIP_SIGNATURE),
        ("gemini-flash-latest", None, SKIP_SIGNATURE),
        ("gemini-3-pro-preview", "CiQBreal", "CiQBreal"),
        ("gemini-2.5-flash", "CiQBreal", "CiQBreal"),
        ("gemini-2.5-flash", None, None),
        ("gemini-2.0-flash", None, None),
    ],
)
def test_thought_signature_is_returned_or_replaced(
    model: str, signature: str | None, sent: str | None
) -> None:
    contents = build({"messages": _tool_turn(signature)}, model=model)["contents"]
    assert contents[1]["parts"][0].get("thoughtSignature") == sent
    assert contents[2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "f", "response": {"result": "ok"}}}],
    }


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("none", {"functionCallingConfig": {"mode": "NONE"}}),
        ("auto", {"functionCallingConfig": {"mode": "AUTO"}}),
        ("required", {"functionCallingConfig": {"mode": "ANY"}}),
        (
            {"type": "function", "function": {"name": "f"}},
            {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
        ),
    ],
)
def test_tool_choice_mapping(choice: Any, config: dict[str, Any]) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
        },
    }
    assert (
        build({"messages": user(), "tools": [tool], "tool_choice": choice})["toolConfig"] == config
    )


@pytest.mark.parametrize(
    ("body", "gateway_cap", "sent"),
    [({"max_tokens": 100}, 40, 40), ({"max_completion_tokens": 70}, None, 70), ({}, None, None)],
)
def test_completion_cap(body: dict[str, Any], gateway_cap: int | None, sent: int | None) -> None:
    out = build({"messages": user(), **body}, max_tokens=gateway_cap)
    assert out.get("generationConfig", {}).get("maxOutputTokens") == sent


def test_recursive_refs_terminate() -> None:
    schema = {
        "type": "object",
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
        "properties": {"root": {"$ref": "#/$defs/Node"}},
    }
    out = gemini_schema(schema)
    depth, node = 0, out["properties"]["root"]
    while "properties" in node:
        node, depth = node["properties"]["child"], depth + 1
    assert 3 < depth < 20
    assert "$ref" not in orjson.dumps(out).decode()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            {
                "messages": [
                    *user(),
                    {"role": "tool", "tool_call_id": "call_nowhere", "content": "x"},
                ]
            },
            "unknown tool_call_id",
        ),
        (
            {
                "messages": [
                    *user(),
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{oops"},
                            }
                        ],
                    },
                ]
            },
            "not valid JSON",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}
                ]
            },
            "file_data",
        ),
        (
            {"messages": user(), "tools": [{"type": "custom", "custom": {"name": "x"}}]},
            "type 'function'",
        ),
        (
            {
                "messages": user(),
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "allowed_tools"},
            },
            "tool_choice",
        ),
        ({"messages": "hello"}, "non-empty list"),
    ],
)
def test_invalid_requests_are_bad_requests(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        build(body)
    assert fragment in info.value.message


# ---------------------------------------------------------------------------- responses


@pytest.mark.parametrize("name", golden_names("gemini", "response_"))
def test_response_matches_golden(name: str) -> None:
    case = golden("gemini", name)
    result = ADAPTER.parse_response(200, {}, orjson.dumps(case["provider_response"]), case["model"])
    assert result.body == case["expected"]
    u = case["expected"]["usage"]
    assert result.usage == Usage(
        u["prompt_tokens"],
        u["completion_tokens"],
        u["prompt_tokens_details"]["cached_tokens"],
        u["completion_tokens_details"]["reasoning_tokens"],
    )
    assert result.finish_reason == case["expected"]["choices"][0]["finish_reason"]


def _answer(finish: str, parts: list[dict[str, Any]] | None = None) -> bytes:
    cand = {
        "content": {"role": "model", "parts": parts or [{"text": "x"}]},
        "finishReason": finish,
        "index": 0,
    }
    return orjson.dumps(
        {
            "candidates": [cand],
            "usageMetadata": {
                "promptTokenCount": 3,
                "candidatesTokenCount": 1,
                "totalTokenCount": 4,
            },
        }
    )


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("LANGUAGE", "stop"),
        ("OTHER", "stop"),
    ],
)
def test_finish_reason_map(reason: str, finish: str) -> None:
    result = ADAPTER.parse_response(200, {}, _answer(reason), "m")
    assert result.finish_reason == finish


def test_stop_with_a_function_call_is_tool_calls() -> None:
    parts = [{"functionCall": {"name": "f", "args": {"a": 1}}}]
    result = ADAPTER.parse_response(200, {}, _answer("STOP", parts), "m")
    assert result.finish_reason == "tool_calls"
    message = result.body["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "call_0", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    ]


def test_several_candidates_become_several_choices() -> None:
    cands = [
        {
            "content": {"role": "model", "parts": [{"text": "A"}]},
            "finishReason": "STOP",
            "index": 0,
        },
        {
            "content": {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
            "finishReason": "STOP",
            "index": 1,
        },
    ]
    body = orjson.dumps(
        {
            "candidates": cands,
            "responseId": "r1",
            "usageMetadata": {
                "promptTokenCount": 5,
                "candidatesTokenCount": 6,
                "totalTokenCount": 11,
            },
        }
    )
    choices = ADAPTER.parse_response(200, {}, body, "m").body["choices"]
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in choices] == [
        (0, "A", "stop"),
        (1, None, "tool_calls"),
    ]
    assert choices[1]["message"]["tool_calls"][0]["id"] == "call_r1_1_0"


def test_thought_parts_are_not_shown() -> None:
    parts: list[dict[str, Any]] = [
        {"text": "thinking about paws", "thought": True},
        {"text": "8 paws."},
    ]
    result = ADAPTER.parse_response(200, {}, _answer("STOP", parts), "m")
    assert result.body["choices"][0]["message"]["content"] == "8 paws."


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"modelVersion": "x"}', b'{"error": {"code": 500}}']
)
def test_unreadable_answers_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedResponse):
        ADAPTER.parse_response(200, {}, body, "m")


def test_tool_call_round_trip_through_openai_shapes() -> None:
    """The answer's tool calls (minted ids, thought signature) sent back rebuild the call turn."""
    answer = golden("gemini", "response_function_call.json")
    message = ADAPTER.parse_response(200, {}, orjson.dumps(answer["provider_response"]), "m").body[
        "choices"
    ][0]["message"]
    results = [
        {"role": "tool", "tool_call_id": c["id"], "content": f"{15 + i}C"}
        for i, c in enumerate(message["tool_calls"])
    ]
    contents = build(
        {"messages": [*user("Temperatures?"), message, *results]}, model="gemini-3-pro-preview"
    )["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": answer["provider_response"]["candidates"][0]["content"]["parts"],
    }
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_current_temperature", "response": {"result": "15C"}}},
        {"functionResponse": {"name": "get_current_temperature", "response": {"result": "16C"}}},
    ]


# ---------------------------------------------------------------------------- streams


def test_text_stream_with_cumulative_usage() -> None:
    t = ADAPTER.stream_translator("gemini-2.5-flash", include_usage=True)
    raw = (GOLDEN / "gemini" / "stream_text.sse").read_bytes()
    assert b"\r\n\r\n" in raw
    r = reassemble(feed(t, raw))
    assert r.roles == ["assistant"]
    assert r.content == {0: "Okay, let's create a Tetris game in Python."}
    assert r.finish_reasons == {0: "stop"}
    # the last cumulative usageMetadata, never the sum of the chunks'
    assert r.usage == [
        {
            "prompt_tokens": 4,
            "completion_tokens": 12 + 2042,
            "total_tokens": 2058,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 2042},
        }
    ]
    assert r.chunks[-1]["choices"] == [] and r.chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert all(c["usage"] is None for c in r.chunks[:-1])
    assert {c["id"] for c in r.chunks} == {"chatcmpl-IZI2acSKMoWl0-kPmYj2yQc"}
    assert t.state.done and t.state.error is None
    assert t.state.usage == Usage(4, 2054, 0, 2042)
    assert "".join(t.state.text) == "Okay, let's create a Tetris game in Python."


def test_usage_before_the_end_is_the_latest_not_the_sum() -> None:
    t = ADAPTER.stream_translator("m", include_usage=True)
    first, second, _ = (GOLDEN / "gemini" / "stream_text.sse").read_bytes().split(b"\r\n\r\n", 2)
    for chunk in (first, second):
        t.feed(SSEEvent(None, chunk.decode().removeprefix("data: ")))
    assert t.state.usage == Usage(4, 9 + 2042, 0, 2042)
    assert not t.state.done and t.state.finish_reason is None


def test_function_call_stream_reassembles() -> None:
    t = ADAPTER.stream_translator("gemini-2.5-flash", include_usage=True)
    r = reassemble(
        feed(t, (GOLDEN / "gemini" / "stream_function_call.sse").read_bytes(), slice_size=7)
    )
    assert r.content == {0: "Checking both cities."}
    calls = r.calls()
    assert [(c["id"], c["type"], c["name"], orjson.loads(c["arguments"])) for c in calls] == [
        (
            "call_qpc2afWVFJK4vr0Pq6WiyAU_0",
            "function",
            "get_current_temperature",
            {"location": "London"},
        ),
        (
            "call_qpc2afWVFJK4vr0Pq6WiyAU_1",
            "function",
            "get_current_temperature",
            {"location": "Paris"},
        ),
    ]
    assert calls[0]["extra_content"] == {
        "google": {"thought_signature": "CiQBcsjafFK168IbtVtoxVV0Tsn8"}
    }
    assert "extra_content" not in calls[1]
    assert r.finish_reasons == {0: "tool_calls"}
    assert r.usage[0]["prompt_tokens"] == 83
    assert r.usage[0]["prompt_tokens_details"] == {"cached_tokens": 64}
    assert r.usage[0]["completion_tokens"] == 118
    assert t.state.done and t.state.finish_reason == "tool_calls"


def test_the_openai_sdk_reads_the_stream_and_keeps_the_signature_for_the_next_turn() -> None:
    t = ADAPTER.stream_translator("gemini-3-pro-preview", include_usage=True)
    done = sdk_completion(feed(t, (GOLDEN / "gemini" / "stream_function_call.sse").read_bytes()))
    assert done.choices[0].finish_reason == "tool_calls"
    assert done.usage is not None and done.usage.total_tokens == 201
    # an agent that replays the SDK's message as is sends the real signature back
    assistant = done.choices[0].message.model_dump(exclude_none=True)
    results = [
        {"role": "tool", "tool_call_id": c["id"], "content": "15C"} for c in assistant["tool_calls"]
    ]
    contents = build({"messages": [*user(), assistant, *results]}, model="gemini-3-pro-preview")[
        "contents"
    ]
    assert [p.get("thoughtSignature") for p in contents[1]["parts"] if "functionCall" in p] == [
        "CiQBcsjafFK168IbtVtoxVV0Tsn8",
        None,
    ]


def test_stream_without_include_usage_has_no_usage_fields() -> None:
    t = ADAPTER.stream_translator("m", include_usage=False)
    r = reassemble(feed(t, (GOLDEN / "gemini" / "stream_text.sse").read_bytes()))
    assert r.usage == []
    assert all("usage" not in c for c in r.chunks)
    assert t.state.done and t.state.usage == Usage(4, 2054, 0, 2042)


def test_blocked_prompt_stream_ends_with_content_filter() -> None:
    t = ADAPTER.stream_translator("m", include_usage=True)
    chunk = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
        "responseId": "b1",
    }
    r = reassemble(t.feed(SSEEvent(None, orjson.dumps(chunk).decode())))
    assert r.roles == ["assistant"]
    assert r.content == {0: ""}
    assert r.finish_reasons == {0: "content_filter"}
    assert r.usage[0]["prompt_tokens"] == 7
    assert t.state.done and t.state.finish_reason == "content_filter"


@pytest.mark.parametrize(
    ("error", "kind", "retry"),
    [
        (
            {
                "code": 503,
                "message": "The model is overloaded. Please try again later.",
                "status": "UNAVAILABLE",
            },
            ErrorKind.SERVER_ERROR,
            None,
        ),
        (
            {
                "code": 429,
                "message": "Quota",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}
                ],
            },
            ErrorKind.RATE_LIMITED,
            3.0,
        ),
    ],
)
def test_error_chunk_mid_stream(
    error: dict[str, Any], kind: ErrorKind, retry: float | None
) -> None:
    t = ADAPTER.stream_translator("m", include_usage=True)
    first = (GOLDEN / "gemini" / "stream_text.sse").read_bytes().split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    raw = first + b"data: " + orjson.dumps({"error": error}) + b"\r\n\r\n"
    r = reassemble(feed(t, raw))
    assert r.content == {0: "Okay, let's create"}
    assert r.finish_reasons == {}
    assert not t.state.done
    assert t.state.error is not None
    assert (t.state.error.kind, t.state.error.status, t.state.error.retry_after_s) == (
        kind,
        error["code"],
        retry,
    )


def test_unreadable_stream_chunk_is_malformed() -> None:
    t = ADAPTER.stream_translator("m", include_usage=True)
    assert t.feed(SSEEvent(None, "{oops")) == []
    assert t.state.error is not None and t.state.error.kind is ErrorKind.MALFORMED


# ---------------------------------------------------------------------------- errors
# (the refusals every adapter classifies alike: tests/contracts/test_adapters.py)


def test_error_wrapped_in_an_array() -> None:
    body = orjson.dumps(
        [
            {
                "error": {
                    "code": 400,
                    "message": "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).",
                    "status": "INVALID_ARGUMENT",
                }
            }
        ]
    )
    assert ADAPTER.classify_error(400, {}, body).kind is ErrorKind.CONTEXT_TOO_LONG


def test_429_without_retry_info_falls_back_to_retry_after_header() -> None:
    fail = ADAPTER.classify_error(
        429,
        {"retry-after": "9"},
        b'{"error": {"code": 429, "message": "x", "status": "RESOURCE_EXHAUSTED"}}',
    )
    assert (fail.kind, fail.retry_after_s) == (ErrorKind.RATE_LIMITED, 9.0)


def test_gemini_sends_no_rate_headers() -> None:
    assert (
        ADAPTER.rate_info(
            {"x-ratelimit-remaining-requests": "5", "date": "Thu, 21 Aug 2025 12:40:01 GMT"}
        )
        is None
    )


def test_the_registry_serves_this_adapter() -> None:
    assert adapter_for("gemini") is ADAPTER
