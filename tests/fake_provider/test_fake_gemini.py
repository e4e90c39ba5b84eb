"""The Gemini protocol driven through the official ``google-genai`` SDK and raw HTTP."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors, types
from google.genai.client import AsyncClient

from quotaflow.fake_provider import KeyState, running_fake_provider
from quotaflow.fake_provider.server import FakeProviderHandle

from .conftest import control, keyed, read_until_cut, sse_events

# google-genai subclasses aiohttp.ClientSession, which aiohttp warns about (their issue, not ours).
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession from ClientSession is discouraged:DeprecationWarning"
)

MODEL = "gemini-2.5-flash"
LOOKUP = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="lookup",
            description="find",
            parameters=types.Schema(
                type=types.Type.OBJECT, properties={"q": types.Schema(type=types.Type.STRING)}
            ),
        )
    ]
)


def client(
    fake: FakeProviderHandle, key: str = "AIza-test", version: str | None = None
) -> AsyncClient:
    options = types.HttpOptions(base_url=fake.base_url, api_version=version)
    return genai.Client(api_key=key, http_options=options).aio


async def generate(c: AsyncClient, contents: str = "hello", **config: Any) -> Any:
    """``models.generate_content`` on :data:`MODEL`, untyped for brevity."""
    return await c.models.generate_content(
        model=MODEL, contents=contents, config=types.GenerateContentConfig(**config)
    )


async def generate_stream(c: AsyncClient, contents: str = "hello", **config: Any) -> list[Any]:
    stream = await c.models.generate_content_stream(
        model=MODEL, contents=contents, config=types.GenerateContentConfig(**config)
    )
    return [chunk async for chunk in stream]


def body(text: str = "hello", **extra: object) -> dict[str, object]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}


def details_of(error: errors.APIError, type_name: str) -> list[Any]:
    found = [d for d in error.details["error"]["details"] if d["@type"].endswith("." + type_name)]
    assert found, error.details
    return found


async def test_generate_content_shape_and_usage(gemini_fake: FakeProviderHandle) -> None:
    async with client(gemini_fake) as c:
        response = await generate(
            c, system_instruction="be terse", max_output_tokens=3, temperature=0.2
        )
    assert response.text == "alpha beta gamma"
    candidate = response.candidates[0]
    assert candidate.finish_reason == types.FinishReason.MAX_TOKENS
    assert candidate.content.role == "model"
    usage = response.usage_metadata
    # systemInstruction counts as a message: 3 + (3 + 2) + (3 + 2)
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.total_token_count) == (
        13,
        3,
        16,
    )
    assert response.model_version == MODEL
    assert len(response.response_id) == 23


async def test_v1beta_query_key_and_stop_finish(
    gemini_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    url = f"{gemini_fake.base_url}/v1beta/models/{MODEL}:generateContent?key=k1"
    async with http.post(url, json=body("ECHO: a b")) as resp:
        assert resp.status == 200
        assert not any(h.lower().startswith("x-ratelimit") for h in resp.headers)
        payload = await resp.json()
    assert payload["candidates"][0]["content"] == {"parts": [{"text": "a b"}], "role": "model"}
    assert payload["candidates"][0]["finishReason"] == "STOP"
    assert payload["usageMetadata"]["candidatesTokenCount"] == 2


async def test_sdk_stream_has_cumulative_usage(gemini_fake: FakeProviderHandle) -> None:
    async with client(gemini_fake, version="v1beta") as c:
        chunks = await generate_stream(c, max_output_tokens=4)
    assert "".join(c.text for c in chunks) == "alpha beta gamma delta"
    assert [c.usage_metadata.candidates_token_count for c in chunks] == [1, 2, 3, 4]
    assert [c.candidates[0].finish_reason for c in chunks] == [
        None,
        None,
        None,
        types.FinishReason.MAX_TOKENS,
    ]


async def test_raw_sse_uses_crlf_and_no_terminator(
    gemini_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    url = f"{gemini_fake.base_url}/v1/models/{MODEL}:streamGenerateContent?alt=sse"
    async with http.post(url, json=body(), headers={"x-goog-api-key": "k"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        raw = await resp.read()
    events = sse_events(raw, b"\r\n\r\n")
    assert len(events) == 16
    assert all(e.startswith(b"data: ") for e in events)
    assert all(b"\n" not in e for e in events)
    assert b"[DONE]" not in raw
    last = json.loads(events[-1][6:])
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"]["totalTokenCount"] == 8 + 16


async def test_stream_without_alt_sse_is_a_json_array(
    gemini_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    url = f"{gemini_fake.base_url}/v1/models/{MODEL}:streamGenerateContent"
    payload = body(generationConfig={"maxOutputTokens": 2})
    async with http.post(url, json=payload, headers={"x-goog-api-key": "k"}) as resp:
        chunks = json.loads(await resp.read())
    assert [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks] == ["alpha", " beta"]


async def test_function_call(gemini_fake: FakeProviderHandle) -> None:
    none_mode = types.ToolConfig(
        function_calling_config=types.FunctionCallingConfig(
            mode=types.FunctionCallingConfigMode.NONE
        )
    )
    async with client(gemini_fake) as c:
        response = await generate(c, "CALL_TOOL rain", tools=[LOOKUP])
        chunks = await generate_stream(c, "CALL_TOOL rain", tools=[LOOKUP])
        plain = await generate(c, "CALL_TOOL rain", tools=[LOOKUP], tool_config=none_mode)
    assert [(fc.name, fc.args) for fc in response.function_calls] == [("lookup", {"q": "rain"})]
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert len(chunks) == 1
    assert chunks[0].function_calls[0].args == {"q": "rain"}
    assert plain.function_calls is None
    assert plain.text.startswith("alpha")


async def test_invalid_key_is_400_api_key_invalid() -> None:
    config = keyed("gemini", good=KeyState(), bad=KeyState(invalid=True))
    async with running_fake_provider(config) as fake, client(fake, "bad") as c:
        with pytest.raises(errors.ClientError) as info:
            await generate(c)
    assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")
    assert details_of(info.value, "ErrorInfo")[0]["reason"] == "API_KEY_INVALID"


async def test_missing_key_is_403(
    gemini_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{gemini_fake.base_url}/v1/models/{MODEL}:generateContent", json=body()
    ) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["status"] == "PERMISSION_DENIED"


async def test_quota_exhausted_is_429_per_day() -> None:
    async with (
        running_fake_provider(keyed("gemini", k=KeyState(quota_tokens=10))) as fake,
        client(fake, "k") as c,
    ):
        await generate(c)
        with pytest.raises(errors.ClientError) as info:
            await generate(c)
    assert (info.value.code, info.value.status) == (429, "RESOURCE_EXHAUSTED")
    violation = details_of(info.value, "QuotaFailure")[0]["violations"][0]
    assert violation["quotaId"] == "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
    assert violation["quotaDimensions"]["model"] == MODEL


async def test_rate_limit_is_429_per_minute_with_retry_info() -> None:
    async with running_fake_provider(protocol="gemini", rpm=1) as fake, client(fake) as c:
        await generate(c)
        with pytest.raises(errors.ClientError) as info:
            await generate(c)
    violation = details_of(info.value, "QuotaFailure")[0]["violations"][0]
    assert violation["quotaId"] == "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    delay = details_of(info.value, "RetryInfo")[0]["retryDelay"]
    assert delay.endswith("s")
    assert 1 <= float(delay[:-1]) <= 60


@pytest.mark.parametrize(
    ("status", "name"), [(500, "INTERNAL"), (503, "UNAVAILABLE"), (429, "RESOURCE_EXHAUSTED")]
)
async def test_status_faults(
    gemini_fake: FakeProviderHandle, http: aiohttp.ClientSession, status: int, name: str
) -> None:
    await control(
        http, gemini_fake, "POST", "faults", {"kind": "status", "status": status, "retry_after": 3}
    )
    async with client(gemini_fake) as c:
        with pytest.raises(errors.APIError) as info:
            await generate(c)
    assert (info.value.code, info.value.status) == (status, name)
    assert details_of(info.value, "RetryInfo")[0]["retryDelay"] == "3s"


async def test_cut_sse_stream(gemini_fake: FakeProviderHandle, http: aiohttp.ClientSession) -> None:
    await control(http, gemini_fake, "POST", "faults", {"kind": "cut_stream", "after_chunks": 3})
    url = f"{gemini_fake.base_url}/v1/models/{MODEL}:streamGenerateContent?alt=sse"
    received = bytearray()
    async with http.post(url, json=body(), headers={"x-goog-api-key": "k"}) as resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_until_cut(resp, received)
    assert received.count(b"\r\n\r\n") == 3


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (body(max_tokens=5), "Invalid JSON payload received. Unknown name \"max_tokens\" at '': Cannot find field."),
        (body(generationConfig={"max_tokens": 5}), "Unknown name \"max_tokens\" at 'generation_config': Cannot find field."),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "Please use a valid role: user, model."),
        ({"contents": []}, "contents is not specified"),
        (body(systemInstruction="be terse"), "Invalid value at 'system_instruction'"),
    ],
)  # fmt: skip
async def test_invalid_requests(
    gemini_fake: FakeProviderHandle,
    http: aiohttp.ClientSession,
    payload: dict[str, object],
    message: str,
) -> None:
    url = f"{gemini_fake.base_url}/v1beta/models/{MODEL}:generateContent"
    async with http.post(url, json=payload, headers={"x-goog-api-key": "k"}) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert message in error["message"]


async def test_snake_case_fields_are_accepted(
    gemini_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    payload = body(
        generation_config={"max_output_tokens": 1}, system_instruction={"parts": [{"text": "x"}]}
    )
    url = f"{gemini_fake.base_url}/v1beta/models/{MODEL}:generateContent"
    async with http.post(url, json=payload, headers={"x-goog-api-key": "k"}) as resp:
        assert resp.status == 200
        assert (await resp.json())["usageMetadata"]["candidatesTokenCount"] == 1


async def test_unknown_method_is_404(
    gemini_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    url = f"{gemini_fake.base_url}/v1beta/models/{MODEL}:predictLongRunning"
    async with http.post(url, json=body(), headers={"x-goog-api-key": "k"}) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["status"] == "NOT_FOUND"
