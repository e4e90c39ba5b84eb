"""The openai protocol adapter: pass-through requests, usage, error kinds, rate-limit headers."""

from __future__ import annotations

import orjson
import pytest

from quotaflow.adapters.base import CallTarget, MalformedResponse, SSEEvent
from quotaflow.adapters.openai import OpenAIAdapter, parse_duration
from quotaflow.types import ErrorKind

A = OpenAIAdapter()
T = CallTarget("https://api.example/v1", "gpt-4o-mini", "sk-test-secret", {"x-extra": "1"})


def test_request_passes_unknown_fields_and_sets_model_cap_and_stream_usage() -> None:
    body = {
        "model": "alias",
        "messages": [{"role": "user", "content": "hi"}],
        "seed": 3,
        "future": {"a": 1},
    }
    call = A.build_request(body, T, max_tokens=77, stream=True)
    sent = orjson.loads(call.body)
    assert call.url == "https://api.example/v1/chat/completions"
    assert call.headers["authorization"] == "Bearer sk-test-secret"
    assert call.headers["x-extra"] == "1"
    assert sent["model"] == "gpt-4o-mini" and sent["max_tokens"] == 77
    assert sent["seed"] == 3 and sent["future"] == {"a": 1}
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert body["model"] == "alias"  # the client's dict is not modified


def test_max_completion_tokens_is_kept_as_the_field_the_client_used() -> None:
    body = {"model": "m", "messages": [], "max_completion_tokens": 500}
    sent = orjson.loads(A.build_request(body, T, max_tokens=120, stream=False).body)
    assert sent["max_completion_tokens"] == 120 and "max_tokens" not in sent


def test_response_usage_with_cached_and_reasoning_tokens() -> None:
    body = orjson.dumps({
        "id": "c", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27,
                  "prompt_tokens_details": {"cached_tokens": 5}, "completion_tokens_details": {"reasoning_tokens": 3}},
    })  # fmt: skip
    r = A.parse_response(200, {}, body, "gpt-4o-mini")
    assert (
        r.usage.prompt_tokens,
        r.usage.completion_tokens,
        r.usage.cached_tokens,
        r.usage.reasoning_tokens,
    ) == (20, 7, 5, 3)
    assert r.finish_reason == "stop" and not r.usage.estimated


def test_response_without_usage_is_estimated() -> None:
    body = orjson.dumps(
        {
            "choices": [
                {"message": {"content": "hello world, this is text"}, "finish_reason": "stop"}
            ]
        }
    )
    r = A.parse_response(200, {}, body, "m")
    assert r.usage.estimated and r.usage.completion_tokens > 0


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"error": {"message": "x"}}', b'{"id": 1}'])
def test_unreadable_2xx_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedResponse):
        A.parse_response(200, {}, body, "m")


def _err(
    status: int,
    etype: str | None,
    code: str | None,
    message: str = "m",
    headers: dict | None = None,
):
    body = orjson.dumps({"error": {"message": message, "type": etype, "param": None, "code": code}})
    return A.classify_error(status, headers or {}, body)


def test_retry_after_headers_and_client_body() -> None:
    f = _err(
        429, "tokens", "rate_limit_exceeded", headers={"retry-after-ms": "1500", "retry-after": "9"}
    )
    assert f.retry_after_s == 1.5
    assert _err(429, "tokens", None, headers={"retry-after": "7"}).retry_after_s == 7.0
    bad = _err(400, "invalid_request_error", None, "nope")
    assert bad.body == {
        "error": {"message": "nope", "type": "invalid_request_error", "param": None, "code": None}
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1s", 1.0),
        ("12ms", 0.012),
        ("1h2m3s", 3723.0),
        ("2.5s", 2.5),
        ("17", 17.0),
        ("junk", None),
        (None, None),
    ],
)
def test_go_durations(text: str | None, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_rate_info_from_headers() -> None:
    info = A.rate_info({
        "x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59", "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "150000", "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s",
    })  # fmt: skip
    assert info is not None
    assert (info.requests_remaining, info.tokens_remaining, info.tokens_reset_s) == (59, 0, 360.0)
    assert A.rate_info({"content-type": "application/json"}) is None


def _frames(stream, events: list[str]) -> list[bytes]:
    out = []
    for e in events:
        out += stream.feed(SSEEvent(None, e))
    return out


CHUNK = '{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":%s}],"usage":null}'
USAGE = '{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}'


def test_stream_passthrough_learns_usage_and_swallows_done() -> None:
    s = A.stream_translator("m", include_usage=True)
    frames = _frames(s, [CHUNK % ("a", "null"), CHUNK % ("b", '"stop"'), USAGE, "[DONE]"])
    assert len(frames) == 3 and all(f.startswith(b"data: ") and f.endswith(b"\n\n") for f in frames)
    assert b"[DONE]" not in b"".join(frames)
    st = s.state
    assert st.done and st.finish_reason == "stop" and "".join(st.text) == "ab"
    assert st.usage is not None and st.usage.total_tokens == 7


def test_stream_without_include_usage_hides_the_usage_chunk_and_field() -> None:
    s = A.stream_translator("m", include_usage=False)
    frames = _frames(s, [CHUNK % ("a", "null"), USAGE, "[DONE]"])
    assert len(frames) == 1
    assert "usage" not in orjson.loads(frames[0][6:])
    assert s.state.usage is not None  # still known to the gateway for billing


def test_stream_error_payload_is_an_error_not_a_frame() -> None:
    s = A.stream_translator("m", include_usage=True)
    frames = _frames(
        s,
        [
            CHUNK % ("a", "null"),
            '{"error": {"message": "overloaded", "type": "server_error", "code": null}}',
        ],
    )
    assert len(frames) == 1
    assert (
        s.state.error is not None
        and s.state.error.kind is ErrorKind.SERVER_ERROR
        and not s.state.done
    )
