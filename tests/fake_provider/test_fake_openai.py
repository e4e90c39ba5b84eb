"""The OpenAI protocol driven through the official ``openai`` SDK (and raw HTTP where the SDK hides bytes)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import openai
import pytest

from quotaflow.fake_provider import KeyState, running_fake_provider
from quotaflow.fake_provider.reply import WORDS
from quotaflow.fake_provider.server import FakeProviderHandle

from .conftest import control, keyed, sse_events

# SDK request params are TypedDicts; plain dicts typed Any keep the tests readable.
HELLO: Any = [{"role": "user", "content": "hello"}]  # 3 + (3 + ceil(5/4)) = 8 prompt tokens
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "find things",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]
CALL: Any = [{"role": "user", "content": "please CALL_TOOL weather in Oslo"}]


def client(
    fake: FakeProviderHandle, key: str = "sk-test", timeout: float = 10
) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.base_url, api_key=key, max_retries=0, timeout=timeout)


async def create(c: openai.AsyncOpenAI, **params: Any) -> Any:
    """``chat.completions.create`` with ``model``/``messages`` defaults, untyped for brevity."""
    params.setdefault("model", "m")
    params.setdefault("messages", HELLO)
    return await c.chat.completions.create(**params)


async def collect(stream: Any, into: list[Any]) -> None:
    async for chunk in stream:
        into.append(chunk)


async def test_plain_completion_has_exact_shape_usage_and_headers(
    openai_fake: FakeProviderHandle,
) -> None:
    async with client(openai_fake) as c:
        raw = await c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)
        completion = raw.parse()
    assert completion.id.startswith("chatcmpl-")
    assert len(completion.id) == len("chatcmpl-") + 29
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert str(completion.system_fingerprint).startswith("fp_")
    choice = completion.choices[0]
    assert choice.message.content == " ".join(WORDS[:16])
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (8, 16)
    assert completion.usage.total_tokens == 24
    headers = raw.headers
    assert headers["x-request-id"].startswith("req_")
    assert (
        int(headers["x-ratelimit-remaining-requests"])
        == int(headers["x-ratelimit-limit-requests"]) - 1
    )
    assert (
        int(headers["x-ratelimit-remaining-tokens"])
        == int(headers["x-ratelimit-limit-tokens"]) - 24
    )
    assert headers["x-ratelimit-reset-requests"].endswith("s")


async def test_max_tokens_cuts_with_length_and_echo_replies(
    openai_fake: FakeProviderHandle,
) -> None:
    echo_messages = [{"role": "user", "content": "please ECHO:  one   two three"}]
    async with client(openai_fake) as c:
        cut = await create(c, max_tokens=3)
        echo = await create(c, messages=echo_messages, max_completion_tokens=100)
    assert cut.choices[0].message.content == "alpha beta gamma"
    assert cut.choices[0].finish_reason == "length"
    assert echo.choices[0].message.content == "one two three"
    assert echo.choices[0].finish_reason == "stop"
    assert echo.usage.completion_tokens == 3


async def test_stream_with_include_usage_matches_the_real_contract(
    openai_fake: FakeProviderHandle,
) -> None:
    chunks: list[Any] = []
    async with client(openai_fake) as c:
        stream = await create(
            c, model="gpt-4o", max_tokens=4, stream=True, stream_options={"include_usage": True}
        )
        await collect(stream, chunks)
    assert len({ch.id for ch in chunks}) == 1
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "alpha beta gamma delta"
    assert all(ch.usage is None for ch in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "length"
    last = chunks[-1]
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (8, 4)


async def test_stream_raw_framing_and_no_usage_without_include_usage(
    openai_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    body = {"model": "m", "messages": HELLO, "max_tokens": 2, "stream": True}
    headers = {"Authorization": "Bearer sk-x"}
    async with http.post(
        openai_fake.base_url + "/chat/completions", json=body, headers=headers
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert "x-ratelimit-limit-tokens" in resp.headers
        raw = await resp.read()
    events = sse_events(raw)
    assert all(e.startswith(b"data: ") for e in events)
    assert events[-1] == b"data: [DONE]"
    payloads = [json.loads(e[6:]) for e in events[:-1]]
    assert [p["choices"][0]["delta"] for p in payloads] == [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "alpha"},
        {"content": " beta"},
        {},
    ]
    assert all("usage" not in p for p in payloads)


async def test_tool_call_non_stream(openai_fake: FakeProviderHandle) -> None:
    async with client(openai_fake) as c:
        done = await create(c, messages=CALL, tools=TOOLS)
        without_tools = await create(c, messages=CALL)
        refused = await create(c, messages=CALL, tools=TOOLS, tool_choice="none")
    message = done.choices[0].message
    assert done.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    call = message.tool_calls[0]
    assert call.id.startswith("call_")
    assert call.type == "function"
    assert call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"q": "weather in Oslo"}
    assert without_tools.choices[0].finish_reason == "stop"
    assert refused.choices[0].message.tool_calls is None


async def test_tool_call_stream(openai_fake: FakeProviderHandle) -> None:
    chunks: list[Any] = []
    async with client(openai_fake) as c:
        await collect(await create(c, messages=CALL, tools=TOOLS, stream=True), chunks)
    first = chunks[0].choices[0].delta.tool_calls[0]
    assert (first.index, first.function.name, first.function.arguments) == (0, "lookup", "")
    assert first.id.startswith("call_")
    later = [ch.choices[0].delta.tool_calls[0] for ch in chunks[1:-1]]
    assert len(later) > 1
    assert all(tc.id is None and tc.index == 0 for tc in later)
    assert json.loads("".join(tc.function.arguments for tc in later)) == {"q": "weather in Oslo"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_unknown_and_invalid_keys_get_401() -> None:
    config = keyed("openai", good=KeyState(), revoked=KeyState(invalid=True))
    async with running_fake_provider(config) as fake:
        for key in ("unknown-key-1234", "revoked"):
            async with client(fake, key) as c:
                with pytest.raises(openai.AuthenticationError) as info:
                    await create(c)
            assert info.value.status_code == 401
            assert info.value.code == "invalid_api_key"
        async with client(fake, "good") as c:
            ok = await create(c)
        stats = fake.state.stats_json()
    assert ok.choices[0].finish_reason == "stop"
    assert stats["by_key"]["revoked"]["errors"] == 1
    assert (stats["requests"], stats["errors"]) == (3, 2)


async def test_missing_key_is_401_with_null_code(
    openai_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        openai_fake.base_url + "/chat/completions", json={"model": "m", "messages": HELLO}
    ) as resp:
        assert resp.status == 401
        error = (await resp.json())["error"]
    assert error["code"] is None
    assert error["type"] == "invalid_request_error"
    assert "You didn't provide an API key" in error["message"]


async def test_quota_is_served_slightly_over_then_insufficient_quota() -> None:
    config = keyed("openai", k=KeyState(quota_tokens=30))
    async with running_fake_provider(config) as fake, client(fake, "k") as c:
        await create(c)
        await create(c)  # 24 used < 30: still served, ending at 48
        with pytest.raises(openai.RateLimitError) as info:
            await create(c)
    assert config.keys is not None
    assert config.keys["k"].used_tokens == 48
    assert info.value.code == "insufficient_quota"
    assert info.value.type == "insufficient_quota"
    assert "retry-after" not in info.value.response.headers


async def test_rpm_limit_gives_rate_limit_exceeded_with_retry_after() -> None:
    async with running_fake_provider(protocol="openai", rpm=2) as fake, client(fake) as c:
        raw = await c.chat.completions.with_raw_response.create(model="m", messages=HELLO)
        assert raw.headers["x-ratelimit-limit-requests"] == "2"
        assert raw.headers["x-ratelimit-remaining-requests"] == "1"
        await create(c)
        with pytest.raises(openai.RateLimitError) as info:
            await create(c)
        # A new window opens once the monotonic clock has moved 60 s on.
        real = fake.state.monotonic
        fake.state.monotonic = lambda: real() + 61
        again = await create(c)
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.type == "requests"
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 60
    assert info.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert again.choices[0].finish_reason == "stop"


async def test_tpm_limit_refuses_once_the_window_holds_tpm_tokens() -> None:
    async with running_fake_provider(protocol="openai", tpm=30) as fake, client(fake) as c:
        await create(c)
        await create(c)
        with pytest.raises(openai.RateLimitError) as info:
            await create(c)
    assert info.value.type == "tokens"
    assert info.value.code == "rate_limit_exceeded"


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (429, openai.RateLimitError, "requests"),
        (500, openai.InternalServerError, "server_error"),
        (503, openai.InternalServerError, "server_error"),
        (403, openai.PermissionDeniedError, "request_forbidden"),
    ],
)
async def test_status_faults_carry_the_real_error_body(
    openai_fake: FakeProviderHandle,
    http: aiohttp.ClientSession,
    status: int,
    error_class: type[openai.APIStatusError],
    error_type: str,
) -> None:
    await control(
        http, openai_fake, "POST", "faults", {"kind": "status", "status": status, "retry_after": 7}
    )
    async with client(openai_fake) as c:
        with pytest.raises(error_class) as info:
            await create(c)
        ok = await create(c)
    assert info.value.status_code == status
    assert info.value.type == error_type
    assert info.value.response.headers["retry-after"] == "7"
    assert ok.choices[0].finish_reason == "stop"  # count=1: only one request faulted


async def test_fault_filters_by_key_and_model(
    openai_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    fault = {"kind": "status", "status": 500, "key": "a", "model": "x", "count": -1}
    await control(http, openai_fake, "POST", "faults", fault)
    async with client(openai_fake, "b") as other_key, client(openai_fake, "a") as target:
        await create(other_key, model="x")
        await create(target, model="y")
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                await create(target, model="x")
        await control(http, openai_fake, "DELETE", "faults")
        await create(target, model="x")
    stats = await control(http, openai_fake, "GET", "stats")
    assert stats["by_model"]["x"] == {
        "requests": 4,
        "errors": 2,
        "prompt_tokens": 16,
        "completion_tokens": 32,
    }


async def test_cut_stream_raises_in_the_sdk_after_the_first_chunks(
    openai_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    await control(http, openai_fake, "POST", "faults", {"kind": "cut_stream", "after_chunks": 2})
    chunks: list[Any] = []
    async with client(openai_fake) as c:
        stream = await create(c, stream=True)
        with pytest.raises(openai.APIConnectionError):
            await collect(stream, chunks)
    assert "".join(ch.choices[0].delta.content for ch in chunks) == "alpha beta"


async def test_cut_non_stream_and_reset_connection_raise_connection_errors(
    openai_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    await control(http, openai_fake, "POST", "faults", {"kind": "cut_stream"})
    await control(http, openai_fake, "POST", "faults", {"kind": "reset_connection"})
    async with client(openai_fake) as c:
        for _ in range(2):
            with pytest.raises(openai.APIConnectionError) as info:
                await create(c)
            # Dropped at once: not the client giving up after its timeout.
            assert not isinstance(info.value, openai.APITimeoutError)
        ok = await create(c)
    assert ok.usage.total_tokens == 24
    assert openai_fake.state.stats_json()["errors"] == 2


async def test_timeout_fault_never_answers(
    openai_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    await control(http, openai_fake, "POST", "faults", {"kind": "timeout"})
    async with client(openai_fake, timeout=0.3) as c:
        with pytest.raises(openai.APITimeoutError):
            await create(c)


async def test_malformed_fault_returns_200_that_is_not_json(
    openai_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    await control(http, openai_fake, "POST", "faults", {"kind": "malformed", "count": 2})
    body = {"model": "m", "messages": HELLO}
    headers = {"Authorization": "Bearer k"}
    async with http.post(
        openai_fake.base_url + "/chat/completions", json=body, headers=headers
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        raw = await resp.read()
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    async with client(openai_fake) as c:
        with pytest.raises(json.JSONDecodeError):  # what the SDK raises on a non-JSON 200
            await create(c)


@pytest.mark.parametrize(
    ("body", "param", "code", "fragment"),
    [
        ({"messages": HELLO}, None, None, "you must provide a model parameter"),
        ({"model": "m"}, "messages", "missing_required_parameter", "Missing required parameter: 'messages'."),
        ({"model": "m", "messages": []}, "messages", "empty_array", "empty array"),
        ({"model": "m", "messages": HELLO, "max_tokens": 0}, "max_tokens", "integer_below_min_value", "got 0"),
        ({"model": "m", "messages": HELLO, "max_completion_tokens": -1}, "max_completion_tokens", "integer_below_min_value", ">= 1"),
        ({"model": "m", "messages": HELLO, "top_k": 3}, None, None, "Unrecognized request argument supplied: top_k"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "invalid_value", "'robot'"),
    ],
)  # fmt: skip
async def test_invalid_requests_get_400_invalid_request_error(
    openai_fake: FakeProviderHandle,
    http: aiohttp.ClientSession,
    body: dict[str, object],
    param: str | None,
    code: str | None,
    fragment: str,
) -> None:
    headers = {"Authorization": "Bearer k"}
    async with http.post(
        openai_fake.base_url + "/chat/completions", json=body, headers=headers
    ) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code)
    assert fragment in error["message"]


async def test_bad_json_is_400(
    openai_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}
    async with http.post(
        openai_fake.base_url + "/chat/completions", data=b"{nope", headers=headers
    ) as resp:
        assert resp.status == 400
        assert "could not parse the JSON body" in (await resp.json())["error"]["message"]


async def test_models_list(openai_fake: FakeProviderHandle) -> None:
    async with client(openai_fake) as c:
        models = [m.id async for m in c.models.list()]
    assert "gpt-4o-mini" in models
    assert len(models) >= 3


async def test_system_message_and_image_parts_are_counted(openai_fake: FakeProviderHandle) -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    messages = [{"role": "system", "content": "be terse"}, {"role": "user", "content": content}]
    async with client(openai_fake) as c:
        done = await create(c, messages=messages, max_tokens=1)
    # 3 + (3 + ceil(8/4)) + (3 + ceil(13/4)) + 85 for the image
    assert done.usage.prompt_tokens == 3 + 5 + 7 + 85
