"""The Anthropic protocol driven through the official ``anthropic`` SDK and raw HTTP."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import anthropic
import pytest

from quotaflow.fake_provider import KeyState, running_fake_provider
from quotaflow.fake_provider.server import FakeProviderHandle

from .conftest import control, keyed, read_until_cut, sse_events

HELLO: Any = [{"role": "user", "content": "hello"}]  # 8 prompt tokens
TOOLS: Any = [
    {
        "name": "lookup",
        "description": "find",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
]
CALL: Any = [{"role": "user", "content": [{"type": "text", "text": "CALL_TOOL pizza"}]}]
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def client(fake: FakeProviderHandle, key: str = "sk-ant-test") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=fake.base_url, api_key=key, max_retries=0)


async def create(c: anthropic.AsyncAnthropic, **params: Any) -> Any:
    """``messages.create`` with defaults, untyped for brevity."""
    params.setdefault("model", "claude-fake-1")
    params.setdefault("max_tokens", 2)
    params.setdefault("messages", HELLO)
    return await c.messages.create(**params)


def raw_headers(key: str = "sk-ant-test", version: str | None = "2023-06-01") -> dict[str, str]:
    headers = {"x-api-key": key}
    if version is not None:
        headers["anthropic-version"] = version
    return headers


async def test_message_shape_usage_and_headers(anthropic_fake: FakeProviderHandle) -> None:
    async with client(anthropic_fake) as c:
        raw = await c.messages.with_raw_response.create(
            model="claude-fake-1", max_tokens=5, system="be terse", messages=HELLO
        )
        message: Any = await raw.parse()
    assert message.id.startswith("msg_01")
    assert (message.type, message.role, message.model) == ("message", "assistant", "claude-fake-1")
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "alpha beta gamma delta epsilon"
    assert message.stop_reason == "max_tokens"
    assert message.stop_sequence is None
    # system counts as a message: 3 + (3 + ceil(8/4)) + (3 + ceil(5/4))
    assert (message.usage.input_tokens, message.usage.output_tokens) == (13, 5)
    assert (message.usage.cache_creation_input_tokens, message.usage.cache_read_input_tokens) == (
        0,
        0,
    )
    headers = raw.headers
    assert headers["request-id"].startswith("req_")
    assert RFC3339.match(headers["anthropic-ratelimit-requests-reset"])
    # The headers are computed after this request was counted and charged (13 in, 5 out).
    for kind, used in (("requests", 1), ("tokens", 18), ("input-tokens", 13), ("output-tokens", 5)):
        limit = int(headers[f"anthropic-ratelimit-{kind}-limit"])
        assert int(headers[f"anthropic-ratelimit-{kind}-remaining"]) == limit - used, kind
    limits = [
        int(headers[f"anthropic-ratelimit-{k}-limit"])
        for k in ("tokens", "input-tokens", "output-tokens")
    ]
    assert limits[0] == limits[1] + limits[2]


async def test_end_turn_when_not_cut(anthropic_fake: FakeProviderHandle) -> None:
    async with client(anthropic_fake) as c:
        message = await create(
            c, max_tokens=100, messages=[{"role": "user", "content": "ECHO: hi you"}]
        )
    assert message.content[0].text == "hi you"
    assert message.stop_reason == "end_turn"


async def test_sdk_stream_accumulates_text_and_usage(anthropic_fake: FakeProviderHandle) -> None:
    async with (
        client(anthropic_fake) as c,
        c.messages.stream(model="c", max_tokens=3, messages=HELLO) as stream,
    ):
        texts = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert texts == ["alpha", " beta", " gamma"]
    assert final.stop_reason == "max_tokens"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (8, 3)


async def test_raw_stream_event_order_and_framing(
    anthropic_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    body = {"model": "c", "max_tokens": 2, "messages": HELLO, "stream": True}
    async with http.post(
        anthropic_fake.url + "/v1/messages", json=body, headers=raw_headers()
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert resp.headers["request-id"].startswith("req_")
        raw = await resp.read()
    events = []
    for event in sse_events(raw):
        name_line, data_line = event.split(b"\n")
        payload = json.loads(data_line.removeprefix(b"data: "))
        assert payload["type"] == name_line.removeprefix(b"event: ").decode()
        events.append(payload)
    assert [e["type"] for e in events] == [
        "message_start", "content_block_start", "ping", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    start = events[0]["message"]
    assert (start["content"], start["stop_reason"]) == ([], None)
    assert start["usage"]["input_tokens"] == 8
    assert events[1]["content_block"] == {"type": "text", "text": ""}
    assert events[3]["delta"] == {"type": "text_delta", "text": "alpha"}
    assert events[6]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert events[6]["usage"] == {"output_tokens": 2}


async def test_tool_use_non_stream(anthropic_fake: FakeProviderHandle) -> None:
    async with client(anthropic_fake) as c:
        done = await create(c, max_tokens=50, messages=CALL, tools=TOOLS)
        refused = await create(
            c, max_tokens=5, messages=CALL, tools=TOOLS, tool_choice={"type": "none"}
        )
    block = done.content[0]
    assert done.stop_reason == "tool_use"
    assert (block.type, block.name, block.input) == ("tool_use", "lookup", {"q": "pizza"})
    assert block.id.startswith("toolu_01")
    assert refused.stop_reason == "max_tokens"


async def test_tool_use_stream(anthropic_fake: FakeProviderHandle) -> None:
    async with (
        client(anthropic_fake) as c,
        c.messages.stream(model="c", max_tokens=50, messages=CALL, tools=TOOLS) as stream,
    ):
        events = [e.type async for e in stream]
        final: Any = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].input == {"q": "pizza"}
    assert events.count("input_json") > 1


async def test_auth_errors(http: aiohttp.ClientSession) -> None:
    config = keyed("anthropic", good=KeyState(), bad=KeyState(invalid=True))
    async with running_fake_provider(config) as fake:
        async with client(fake, "bad") as c:
            with pytest.raises(anthropic.AuthenticationError) as info:
                await create(c)
        # x-api-key wins over Authorization: Bearer when both are sent.
        headers = {**raw_headers("good"), "Authorization": "Bearer bad"}
        body = {"model": "c", "max_tokens": 1, "messages": HELLO}
        async with http.post(fake.url + "/v1/messages", json=body, headers=headers) as resp:
            assert resp.status == 200
        async with http.post(
            fake.url + "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}
        ) as resp:
            assert resp.status == 401
            missing = await resp.json()
    error_body: Any = info.value.body
    assert error_body["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}
    assert error_body["request_id"] == info.value.response.headers["request-id"]
    assert missing["error"]["message"] == "x-api-key header is required"


async def test_credit_exhaustion_is_a_400() -> None:
    async with (
        running_fake_provider(keyed("anthropic", k=KeyState(quota_tokens=5))) as fake,
        client(fake, "k") as c,
    ):
        await create(c)
        with pytest.raises(anthropic.BadRequestError) as info:
            await create(c)
    error_body: Any = info.value.body
    assert error_body["error"] == {
        "type": "invalid_request_error",
        "message": "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
    }


async def test_rate_limit_error_with_retry_after() -> None:
    async with running_fake_provider(protocol="anthropic", rpm=1) as fake, client(fake) as c:
        await create(c)
        with pytest.raises(anthropic.RateLimitError) as info:
            await create(c)
    error_body: Any = info.value.body
    assert error_body["error"]["type"] == "rate_limit_error"
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 60
    assert info.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"


@pytest.mark.parametrize(
    ("status", "error_type", "error_class"),
    [
        (529, "overloaded_error", anthropic.OverloadedError),
        (500, "api_error", anthropic.InternalServerError),
        (429, "rate_limit_error", anthropic.RateLimitError),
    ],
)
async def test_status_faults(
    anthropic_fake: FakeProviderHandle,
    http: aiohttp.ClientSession,
    status: int,
    error_type: str,
    error_class: type[anthropic.APIStatusError],
) -> None:
    await control(
        http,
        anthropic_fake,
        "POST",
        "faults",
        {"kind": "status", "status": status, "retry_after": 2},
    )
    async with client(anthropic_fake) as c:
        with pytest.raises(error_class) as info:
            await create(c)
    error_body: Any = info.value.body
    assert info.value.status_code == status
    assert error_body["error"]["type"] == error_type
    assert info.value.response.headers["retry-after"] == "2"


async def test_cut_stream_leaves_no_message_stop(
    anthropic_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    await control(http, anthropic_fake, "POST", "faults", {"kind": "cut_stream", "after_chunks": 1})
    body = {"model": "c", "max_tokens": 5, "messages": HELLO, "stream": True}
    received = bytearray()
    async with http.post(
        anthropic_fake.url + "/v1/messages", json=body, headers=raw_headers()
    ) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_until_cut(resp, received)
    assert received.count(b"event: content_block_delta") == 1
    assert b"message_stop" not in received


@pytest.mark.parametrize(
    ("version", "body", "message"),
    [
        (None, {"model": "c", "max_tokens": 1, "messages": HELLO}, "anthropic-version: header is required"),
        ("2099-01-01", {"model": "c", "max_tokens": 1, "messages": HELLO}, 'anthropic-version: "2099-01-01" is not a valid version'),
        ("2023-06-01", {"model": "c", "max_tokens": 1, "messages": HELLO, "frequency_penalty": 1}, "frequency_penalty: Extra inputs are not permitted"),
        ("2026-10-21", {"model": "c", "max_tokens": 1, "messages": HELLO, "temperature": 1.0}, "temperature: Extra inputs are not permitted"),
        ("2023-06-01", {"model": "c", "messages": HELLO}, "max_tokens: Field required"),
        ("2023-06-01", {"model": "c", "max_tokens": 0, "messages": HELLO}, "max_tokens: Input should be greater than or equal to 1"),
        ("2023-06-01", {"model": "c", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}, 'Unexpected role "system"'),
        ("2023-06-01", {"model": "claude-haiku-4-5", "max_tokens": 1, "messages": [*HELLO, {"role": "system", "content": "x"}]}, 'Unexpected role "system"'),
        ("2023-06-01", {"model": "claude-opus-4-8", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}, *HELLO]}, "cannot be the first message"),
        ("2023-06-01", {"model": "claude-opus-4-8", "max_tokens": 1, "messages": [*HELLO, {"role": "assistant", "content": "a"}, {"role": "system", "content": "x"}]}, "must follow a user message"),
        ("2023-06-01", {"model": "claude-opus-4-8", "max_tokens": 1, "messages": [*HELLO, {"role": "system", "content": "x"}, {"role": "system", "content": "y"}]}, "must be last or followed by an assistant message"),
        ("2023-06-01", {"model": "claude-opus-4-8", "max_tokens": 1, "messages": [*HELLO, {"role": "system", "content": [{"type": "image", "source": {}}]}]}, "text blocks only"),
    ],
)  # fmt: skip
async def test_invalid_requests(
    anthropic_fake: FakeProviderHandle,
    http: aiohttp.ClientSession,
    version: str | None,
    body: dict[str, object],
    message: str,
) -> None:
    headers = raw_headers(version=version)
    async with http.post(anthropic_fake.url + "/v1/messages", json=body, headers=headers) as resp:
        assert resp.status == 400
        payload = await resp.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "invalid_request_error"
    assert message in payload["error"]["message"]
    assert payload["request_id"] == resp.headers["request-id"]


async def test_sampling_params_are_accepted_under_2023_06_01(
    anthropic_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    body = {"model": "c", "max_tokens": 1, "messages": HELLO, "temperature": 0.5, "top_k": 3}
    async with http.post(
        anthropic_fake.url + "/v1/messages", json=body, headers=raw_headers()
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["usage"]["output_tokens"] == 1


async def test_mid_conversation_system_message_on_opus_4_8(
    anthropic_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    """Claude Opus 4.8 takes a ``system`` message right after a user turn; the fake still
    answers the user turn before it (an echo, or a tool call)."""
    instruction = {"role": "system", "content": [{"type": "text", "text": "be brief"}]}
    body = {
        "model": "claude-opus-4-8",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "ECHO: still heard"}, instruction],
    }
    async with http.post(
        anthropic_fake.url + "/v1/messages", json=body, headers=raw_headers()
    ) as r:
        assert r.status == 200
        answer = await r.json()
    assert answer["content"] == [{"type": "text", "text": "still heard"}]
    tool = {"name": "lookup", "input_schema": {"type": "object"}}
    body["messages"] = [{"role": "user", "content": "CALL_TOOL word"}, instruction]
    body["tools"] = [tool]
    async with http.post(
        anthropic_fake.url + "/v1/messages", json=body, headers=raw_headers()
    ) as r:
        assert r.status == 200
        answer = await r.json()
    assert answer["stop_reason"] == "tool_use"
    assert answer["content"][-1]["input"] == {"q": "word"}
